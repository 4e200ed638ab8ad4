"""Logging: structured key=value lines from us, TensorFlow/Beam noise off unless --verbose."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator, TextIO

from tf_bigexport.transforms.job_progress import CONSOLE_PID_ENV

LOGGER_NAME = "tf_bigexport"
# Where `run` puts what Beam's multi_processing workers write to stderr themselves (worker_output_to).
WORKER_OUTPUT = "worker-output.log"
# Where Beam's runner logs what worker processes logged (one record per worker record).
WORKER_LOG_LOGGER = "apache_beam.runners.portability.local_job_service"


def configure(verbose: bool = False) -> None:
    """Call before TensorFlow is imported: its C++ log level is read once, at import.

    Our lines (job progress, failures) go to stderr; other libraries' only
    when they warn, everything with --verbose. Lines our stages log in Beam
    worker processes (--direct_running_mode multi_processing) reach this
    process through Beam's logging service; they are shown as if logged here.
    """
    global _verbose  # pylint: disable=global-statement
    _verbose = verbose
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    os.environ[CONSOLE_PID_ENV] = str(os.getpid())  # job_progress draws live lines only in this process
    handler = _ConsoleHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_ShownRecords(verbose))
    handler._tf_bigexport = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only our own handler, so embedding code (and pytest) keep theirs.
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_tf_bigexport", False)] + [handler]
    root.setLevel(logging.INFO)  # forwarded worker lines arrive on the root logger; the filter picks
    logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apache_beam", "tensorflow", "absl", "h5py", "urllib3", "google", "gcsfs", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger(WORKER_LOG_LOGGER).setLevel(logging.INFO)  # the filter picks our lines out
    if not verbose:
        with contextlib.suppress(ImportError):
            import absl.logging
            absl.logging.set_verbosity(absl.logging.ERROR)
        # Google's client libraries warn, at import, that they will stop updating for Python 3.10:
        # theirs to say, nothing a user of this run can act on.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core\._python_version_support")


class _ConsoleHandler(logging.StreamHandler):
    """stderr, printed above the live job lines when job_progress draws them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tf_bigexport.transforms import job_progress
        board = job_progress.board()
        if board is None:
            super().emit(record)
            return
        try:
            board.print_above(self.format(record))
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _from_beam(record: logging.LogRecord) -> bool:
    return f"{os.sep}apache_beam{os.sep}" in (record.pathname or "")


class _ShownRecords(logging.Filter):
    """Ours always; others' warnings (everything with --verbose); Beam worker entries unwrapped."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        entry = _worker_entry_text(record)
        if entry is not None:
            return self._worker_entry(record, entry)
        if record.name.split(".")[0] == LOGGER_NAME:
            return True
        if self._verbose:
            return True
        if record.name == "root" and record.levelno < logging.ERROR and _from_beam(record):
            return False  # Beam's import-time notes on the root logger ("apitools not found, ...")
        return record.levelno >= logging.WARNING  # storage's own INFO lines too

    def _worker_entry(self, record: logging.LogRecord, text: str) -> bool:
        """A Beam worker's LogEntry, logged as text by the runner: show its message if it is one of
        our lines or an error (Beam's own worker warnings, e.g. about its internal flags, are noise)."""
        from apache_beam.portability.api import beam_fn_api_pb2
        from google.protobuf import text_format
        entry = beam_fn_api_pb2.LogEntry()
        try:
            text_format.Parse(text, entry)
        except text_format.ParseError:
            return self._verbose
        ours = _is_our_code(entry.log_location.rpartition(":")[0])
        if not (ours or self._verbose or record.levelno >= logging.ERROR):
            return False
        record.msg, record.args = entry.message, ()
        return True


def _worker_entry_text(record: logging.LogRecord) -> str | None:
    """The LogEntry text of a record Beam's runner logged for a worker process, else None."""
    if record.name == WORKER_LOG_LOGGER and record.msg == "Worker: %s" and record.args:
        return str(record.args[0])  # multi_processing: local_job_service's logging service
    if record.name == "root" and isinstance(record.msg, str) and record.msg.startswith("severity:"):
        return record.msg  # the portable runner's basic logging service
    return None


def _is_our_code(path: str) -> bool:
    from tf_bigexport import pipeline, transforms
    roots = [os.path.abspath(p) for m in (pipeline, transforms) for p in m.__path__]  # storage: warnings only
    return any(os.path.abspath(path).startswith(root + os.sep) for root in roots)


_verbose = False
# A copy of the terminal's fd 2, opened once and never closed: a live job board may hold it.
_terminal: TextIO | None = None


@contextlib.contextmanager
def worker_output_to(path: str) -> Iterator[None]:
    """Child processes started within (Beam's multi_processing workers) write their stderr to
    ``path``; this process's lines still reach the terminal.

    A worker's imports log to the root logger before Beam's own handler exists (without Beam's
    GCP extra: "apitools not found"), which has Python's logging print every later worker record
    to stderr as well. The worker lines that matter reach `run` through Beam's logging service
    anyway. With --verbose, or if sys.stderr is not fd 2 (embedded, tests), nothing changes.
    """
    global _terminal  # pylint: disable=global-statement
    if _verbose or not _writes_to_fd2(sys.stderr):
        yield
        return
    sys.stderr.flush()
    if _terminal is None:
        _terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    saved = os.dup(2)
    with open(path, "ab") as output:
        os.dup2(output.fileno(), 2)
    previous, sys.stderr = sys.stderr, _terminal
    ours = [h for h in logging.getLogger().handlers
            if getattr(h, "_tf_bigexport", False) and getattr(h, "stream", None) is previous]
    for handler in ours:
        handler.setStream(_terminal)
    try:
        yield
    finally:
        _terminal.flush()
        for handler in ours:
            handler.setStream(previous)
        sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)


def _writes_to_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, io.StringIO, a closed stream
        return False


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Silences C++ writes to fd 2 (TensorFlow prints a few lines at import
    that TF_CPP_MIN_LOG_LEVEL does not cover). Python exceptions still surface."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow(verbose: bool = False):
    """TensorFlow, quietly; UnsupportedTensorFlowError if it is missing or outside the supported range."""
    from tf_bigexport.imageformat import tf_version
    with native_stderr_silenced(not verbose):
        tf = tf_version.import_tensorflow()
    if not verbose:
        tf.get_logger().setLevel(logging.ERROR)
        tf.autograph.set_verbosity(0)
    return tf


def progress(message: str, **fields) -> None:
    """One progress line, e.g. progress("exporting", jobs=3) -> 'exporting jobs=3'."""
    text = " ".join([message] + [f"{k}={v}" for k, v in fields.items()])
    logging.getLogger(LOGGER_NAME).info(text)
