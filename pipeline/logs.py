"""Logging: structured key=value lines from us, TensorFlow/Beam noise off unless --verbose."""
from __future__ import annotations

import contextlib
import logging
import os
import sys

LOGGER_NAME = "tf_bigexport"


def configure(verbose: bool = False) -> None:
    """Call before TensorFlow is imported: its C++ log level is read once, at import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler._tf_bigexport = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only our own handler, so embedding code (and pytest) keep theirs.
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_tf_bigexport", False)] + [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger(LOGGER_NAME).setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apache_beam", "tensorflow", "absl", "h5py", "urllib3", "google", "gcsfs", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        with contextlib.suppress(ImportError):
            import absl.logging
            absl.logging.set_verbosity(absl.logging.ERROR)


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
