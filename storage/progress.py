"""Progress of a long byte-moving step: a live line on a TTY, a few log lines otherwise.

Uses nothing else of storage, so the layers above (transforms' save, the
pipeline's verify) show their long steps the way uploads do.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

from tf_bigexport.byte_sizes import human_bytes

log = logging.getLogger("storage")

# Off a terminal, one log line per this many seconds at most between the
# per-file and final lines: enough to see a multi-GB step move, never one per record.
LOG_INTERVAL = 30.0


# A caller that shows progress its own way (the pipeline's per-job lines) routes
# every Progress created in its context there instead of drawing or logging.
_route: contextvars.ContextVar[Callable[["Progress"], None] | None] = contextvars.ContextVar(
    "storage_progress_route", default=None)


@contextlib.contextmanager
def routed_to(update: Callable[["Progress"], None]) -> Iterator[None]:
    """Within this context, new Progress objects call ``update(progress)`` instead of drawing or logging."""
    token = _route.set(update)
    try:
        yield
    finally:
        _route.reset(token)


class Progress:
    """Byte counter shared by worker threads; a live line on a TTY, log lines otherwise.

    ``total_files`` None: a single-file step, the line shows bytes only.
    """

    def __init__(self, label: str, total_bytes: int, total_files: int | None = None,
                 stream: TextIO | None = None, *, logger: logging.Logger | None = None) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.bytes = 0
        self.files = 0
        self._log = logger or log
        self._lock = threading.Lock()
        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._last_log = self._start
        self._route = _route.get()  # read here: the worker threads adding bytes do not share the context

    def rate(self) -> float:
        return self.bytes / max(time.monotonic() - self._start, 1e-6)

    def expect(self, total_bytes: int) -> None:
        """Revise the total (a writer that only estimated it up front)."""
        with self._lock:
            self.total_bytes = total_bytes

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            if self._route is not None:
                self._route(self)
            elif self._tty:
                self._draw()
            elif time.monotonic() - self._last_log >= LOG_INTERVAL:
                self._last_log = time.monotonic()
                self._log.info("%s: %s/%s at %s/s", self.label, human_bytes(self.bytes),
                               human_bytes(self.total_bytes), human_bytes(self.rate()))

    def file_done(self, name: str, size: int) -> None:
        with self._lock:
            self.files += 1
            if self._route is not None:
                self._route(self)
            elif self._tty:
                self._draw(force=True)
            else:
                self._last_log = time.monotonic()
                self._log.info("%s: %s (%s) done, %d/%d files, %s/%s at %s/s", self.label, name,
                               human_bytes(size), self.files, self.total_files or self.files,
                               human_bytes(self.bytes), human_bytes(self.total_bytes),
                               human_bytes(self.rate()))

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._tty or (not force and now - self._last_draw < 0.2):
            return
        self._last_draw = now
        files = "" if self.total_files is None else f" {self.files}/{self.total_files} files"
        self._stream.write(f"\r{self.label}: {human_bytes(self.bytes)}/{human_bytes(self.total_bytes)}"
                           f"{files} {human_bytes(self.rate())}/s   ")
        self._stream.flush()

    def close(self) -> None:
        if self._route is not None:
            self._route(self)
        elif self._tty:
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
        elif self.total_files is None:
            self._log.info("%s: finished, %s in %.1fs (%s/s)", self.label, human_bytes(self.bytes),
                           time.monotonic() - self._start, human_bytes(self.rate()))
        else:
            self._log.info("%s: finished %d files, %s in %.1fs (%s/s)", self.label, self.files,
                           human_bytes(self.bytes), time.monotonic() - self._start,
                           human_bytes(self.rate()))
