"""Progress of each job's stages: one live line per job on a terminal, sparse
log lines everywhere else.

A stage reports through ``stage_progress(job, stage)`` (StageDoFn opens it
around every stage); code inside it updates ``current()`` with a phase, byte
or file counts, and byte-moving storage steps (storage.progress.Progress) are
routed into it too, so their totals show under the job's name.

- On a terminal (stderr is a TTY, in the process that owns the console) the
  board keeps one line per unfinished job, redrawn in place; a finished
  job's line is printed for good above it.
- Elsewhere (a log file, a Beam worker process, a test): a stage gets one
  line when it ends; a stage still running after START_AFTER seconds also
  gets a start line, then a line every LOG_INTERVAL seconds with its counts.
  A 0.0 s stage is one line. With --verbose every stage's start is logged
  when it happens.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

from tf_bigexport.storage import progress as storage_progress
from tf_bigexport.storage.progress import human_bytes

log = logging.getLogger("tf_bigexport")

START_AFTER = 2.0
LOG_INTERVAL = 30.0
CONSOLE_PID_ENV = "TF_BIGEXPORT_CONSOLE_PID"  # set by the CLI in the process that owns the terminal
_REDRAW_EVERY = 0.2


class StageProgress:
    """One job's stage in progress: what it is doing and how far it got."""

    def __init__(self, job: str, stage: str, sink: "_Sink") -> None:
        self.job = job
        self.stage = stage
        self.started = time.monotonic()
        self.phase_text = ""
        self.done_bytes: int | None = None
        self.total_bytes: int | None = None
        self.done_files: int | None = None
        self.total_files: int | None = None
        self.logged_start = False
        self.last_log = self.started
        self.outcome: str | None = None  # set by the last stage of a job: ends its line, e.g. "published version 3"
        self._sink = sink

    def switch_stage(self, stage: str) -> None:
        """The step moved on to its next stage (a DoFn doing two): the previous one ends here."""
        if stage == self.stage:
            return
        self._sink.ended(self, failed=None, outcome=None)
        self.stage = stage
        self.started = self.last_log = time.monotonic()
        self.logged_start = False
        self.phase_text = ""
        self.done_bytes = self.total_bytes = self.done_files = self.total_files = None
        self._sink.started(self)

    def phase(self, text: str) -> None:
        """What the stage is doing now, e.g. "building the model"; resets the counts."""
        self.phase_text = text
        self.done_bytes = self.total_bytes = self.done_files = self.total_files = None
        self._sink.changed(self)

    def bytes(self, done: int, total: int | None) -> None:
        self.done_bytes, self.total_bytes = done, total
        self._sink.changed(self)

    def files(self, done: int, total: int | None) -> None:
        self.done_files, self.total_files = done, total
        self._sink.changed(self)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def counts(self) -> str:
        parts = []
        if self.done_bytes is not None:
            total = f"/{human_bytes(self.total_bytes)}" if self.total_bytes else ""
            parts.append(f"{human_bytes(self.done_bytes)}{total}")
        if self.done_files is not None and self.total_files:
            parts.append(f"{self.done_files}/{self.total_files} files")
        return " ".join(parts)

    # storage.progress.Progress hands its counts here while this stage is current
    def storage_update(self, step: "storage_progress.Progress") -> None:
        self.done_bytes, self.total_bytes = step.bytes, step.total_bytes
        if step.total_files is not None:
            self.done_files, self.total_files = step.files, step.total_files
        self._sink.changed(self)


class _NoProgress(StageProgress):
    """What current() returns outside a stage (direct calls, tests): updates go nowhere."""

    def __init__(self) -> None:
        super().__init__("", "", _Sink())


_current: contextvars.ContextVar[StageProgress | None] = contextvars.ContextVar("tf_bigexport_stage", default=None)


def current() -> StageProgress:
    return _current.get() or _NoProgress()


@contextlib.contextmanager
def stage_progress(job: str, stage: str,
                   describe: Callable[[BaseException], str] = lambda e: f"{type(e).__name__}: {e}"
                   ) -> Iterator[StageProgress]:
    """Reports one stage of one job from start to end (an exception out of it: the stage failed)."""
    sink = _sink()
    progress = StageProgress(job, stage, sink)
    token = _current.set(progress)
    sink.started(progress)
    try:
        with storage_progress.routed_to(progress.storage_update):
            yield progress
    except BaseException as e:
        progress.stage = getattr(e, "stage", None) or progress.stage  # a combined stage says which part failed
        sink.ended(progress, failed=describe(e) if isinstance(e, Exception) else type(e).__name__, outcome=None)
        raise
    else:
        sink.ended(progress, failed=None, outcome=progress.outcome)
    finally:
        _current.reset(token)


# ---- sinks ------------------------------------------------------------------------

class _Sink:
    def started(self, progress: StageProgress) -> None: ...
    def changed(self, progress: StageProgress) -> None: ...
    def ended(self, progress: StageProgress, failed: str | None, outcome: str | None) -> None: ...
    def tick(self) -> None: ...


class LogLines(_Sink):
    """Sparse key=value lines for logs: complete (every stage ends with a line) but never chatty."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[StageProgress] = set()

    def started(self, progress: StageProgress) -> None:
        with self._lock:
            self._running.add(progress)
        if log.isEnabledFor(logging.DEBUG):  # --verbose: every start, as it happens
            progress.logged_start = True
            log.debug("job=%s stage=%s status=started", progress.job, progress.stage)

    def ended(self, progress: StageProgress, failed: str | None, outcome: str | None) -> None:
        with self._lock:
            self._running.discard(progress)
        counts = progress.counts()
        extra = f" {counts.replace(' ', '_')}" if counts else ""
        if failed is not None:
            log.warning("job=%s stage=%s status=failed seconds=%.1f error=%s", progress.job, progress.stage,
                        progress.seconds(), failed)
        else:
            log.info("job=%s stage=%s status=done seconds=%.1f%s%s", progress.job, progress.stage,
                     progress.seconds(), extra, f" result={outcome.replace(' ', '_')}" if outcome else "")

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            running = list(self._running)
        for progress in running:
            if not progress.logged_start and now - progress.started >= START_AFTER:
                progress.logged_start = True
                progress.last_log = now
                log.info("job=%s stage=%s status=started%s", progress.job, progress.stage, _phase_field(progress))
            elif progress.logged_start and now - progress.last_log >= LOG_INTERVAL:
                progress.last_log = now
                counts = progress.counts()
                log.info("job=%s stage=%s status=running seconds=%.0f%s%s", progress.job, progress.stage,
                         now - progress.started, _phase_field(progress),
                         f" progress={counts.replace(' ', '_')}" if counts else "")


def _phase_field(progress: StageProgress) -> str:
    return f" phase={progress.phase_text.replace(' ', '_')}" if progress.phase_text else ""


class Board(_Sink):
    """One line per unfinished job on a terminal, redrawn in place; finished jobs scroll up."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._lines: dict[str, str] = {}  # job -> its line, in the order jobs appeared
        self._drawn = 0  # lines of the block currently on screen
        self._last_draw = 0.0
        self._active: dict[str, StageProgress] = {}

    def started(self, progress: StageProgress) -> None:
        with self._lock:
            self._active[progress.job] = progress
            self._lines[progress.job] = self._describe(progress)
            self._draw(force=True)

    def changed(self, progress: StageProgress) -> None:
        with self._lock:
            if self._active.get(progress.job) is progress:
                self._lines[progress.job] = self._describe(progress)
                self._draw()

    def ended(self, progress: StageProgress, failed: str | None, outcome: str | None) -> None:
        with self._lock:
            if self._active.get(progress.job) is progress:
                del self._active[progress.job]
            if failed is not None or outcome is not None:
                final = (f"{progress.job}: FAILED in {progress.stage}: {failed}" if failed is not None
                         else f"{progress.job}: {outcome}")
                self._lines.pop(progress.job, None)
                self.print_above(final)
                return
            self._lines[progress.job] = f"{progress.job}: {progress.stage} done in {progress.seconds():.1f}s"
            self._draw(force=True)

    def tick(self) -> None:
        with self._lock:
            for job, progress in self._active.items():
                self._lines[job] = self._describe(progress)
            if self._active:
                self._draw(force=True)

    def print_above(self, text: str) -> None:
        """A permanent line (a finished job, a log record) above the live block."""
        with self._lock:
            self._clear()
            self._stream.write(text.rstrip("\n") + "\n")
            self._draw(force=True)

    @staticmethod
    def _describe(progress: StageProgress) -> str:
        parts = [f"{progress.job}: {progress.stage}"]
        if progress.phase_text:
            parts.append(progress.phase_text)
        counts = progress.counts()
        if counts:
            parts.append(counts)
        parts.append(f"{progress.seconds():.0f}s")
        return " ".join(parts)

    def _clear(self) -> None:
        if self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's first line, erase below
            self._drawn = 0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_EVERY:
            return
        self._last_draw = now
        width = _terminal_width(self._stream)
        self._clear()
        for line in self._lines.values():
            self._stream.write(line[:width - 1] + "\x1b[K\n")
        self._drawn = len(self._lines)
        self._stream.flush()


def _terminal_width(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return columns if columns > 20 else 120  # a pty without a size reports 0


# ---- the process's sink -------------------------------------------------------------

_sink_lock = threading.Lock()
_the_sink: _Sink | None = None


def _sink() -> _Sink:
    global _the_sink
    with _sink_lock:
        if _the_sink is None:
            _the_sink = _choose_sink()
            threading.Thread(target=_ticker, args=(_the_sink,), name="tf-bigexport-progress", daemon=True).start()
        return _the_sink


def _choose_sink() -> _Sink:
    console = os.environ.get(CONSOLE_PID_ENV)
    if console == str(os.getpid()) and sys.stderr.isatty():
        return Board(sys.stderr)
    return LogLines()


def board() -> Board | None:
    """The terminal board of this process, if it draws one (log handlers print above it)."""
    return _the_sink if isinstance(_the_sink, Board) else None


def use_sink(sink: _Sink | None) -> None:
    """Replace the process's sink (tests; None: choose again on next use)."""
    global _the_sink
    with _sink_lock:
        _the_sink = sink
        if sink is not None:
            threading.Thread(target=_ticker, args=(sink,), name="tf-bigexport-progress", daemon=True).start()


def _ticker(sink: _Sink) -> None:
    while _the_sink is sink:
        time.sleep(0.5)
        try:
            sink.tick()
        except Exception:  # noqa: BLE001 - progress must never break an export
            pass
