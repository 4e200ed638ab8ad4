"""Parallel, retried, streamed transfers with progress reporting.

Transient failures (5xx, 429, timeouts, connection resets) are retried with
exponential backoff and jitter; permanent ones (403, 404, failed
preconditions, bad requests) fail at once.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from fsspec.callbacks import Callback

from .progress import Progress  # also imported from here by staging and commit

log = logging.getLogger("storage")
T = TypeVar("T")

_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.ETIMEDOUT,
                     errno.EPIPE, errno.EAGAIN, errno.EHOSTUNREACH, errno.ENETUNREACH}
_TRANSIENT_NAMES = {
    # aiohttp / botocore / requests / google-auth class names: matched by name so
    # this module imports none of them.
    "ServerDisconnectedError", "ClientConnectionError", "ClientConnectorError",
    "ClientOSError", "ClientPayloadError", "ServerTimeoutError", "EndpointConnectionError",
    "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError", "ResponseStreamingError",
    "IncompleteReadError", "ChunkedEncodingError", "TransportError", "ProxyError",
}
_TRANSIENT_S3_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                       "RequestTimeTooSkewed", "Throttling", "ThrottlingException"}


def _status_of(exc: BaseException) -> int | None:
    for attr in ("code", "status", "status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure; False for permanent ones."""
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError,
                        IsADirectoryError, NotADirectoryError, ValueError, TypeError)):
        return False
    for link in _chain(exc):
        status = _status_of(link)
        if status is not None:
            return status >= 500 or status in (408, 429)
        if isinstance(link, (TimeoutError, ConnectionError)):
            return True
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
        if type(link).__name__ in _TRANSIENT_NAMES:
            return True
        code = getattr(link, "response", {}) or {}
        if isinstance(code, dict) and code.get("Error", {}).get("Code") in _TRANSIENT_S3_CODES:
            return True
    return False


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def with_retries(action: Callable[[], T], what: str, policy: RetryPolicy,
                 describe: Callable[[BaseException], str] = str) -> T:
    """Run `action`, retrying transient failures per `policy`."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc) or attempt == policy.attempts:
                raise
            pause = policy.delay(attempt)
            log.warning("%s: transient failure (attempt %d/%d), retrying in %.2fs: %s",
                        what, attempt, policy.attempts, pause, describe(exc))
            time.sleep(pause)
    raise AssertionError("unreachable")


class FileProgress(Callback):
    """fsspec callback feeding one file's byte counts into a shared Progress."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self._progress = progress
        self._reported = 0

    def call(self, *args, **kwargs) -> None:
        delta = self.value - self._reported
        if delta > 0:
            self._reported = self.value
            self._progress.add_bytes(delta)

    def finish(self, size: int) -> None:
        """Account for bytes a backend moved without reporting them."""
        if size > self._reported:
            self._progress.add_bytes(size - self._reported)
            self._reported = size

    def restart(self) -> None:
        """A retried transfer starts over: take back what it reported."""
        self._progress.add_bytes(-self._reported)
        self._reported = 0
        self.value = 0


def run_parallel(tasks: Iterable[Callable[[], T]], max_workers: int) -> list[T]:
    """Run callables on a bounded thread pool; the first failure cancels what has not started."""
    task_list = list(tasks)
    if not task_list:
        return []
    if max_workers <= 1 or len(task_list) == 1:
        return [task() for task in task_list]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(task_list)),
                            thread_name_prefix="storage") as pool:
        futures = [pool.submit(task) for task in task_list]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]
