"""The one retry layer: every backend call of the storage facade (objects.Store) runs under it.

The backends' own retry loops are off (backends.py), so a call is tried at most
`attempts` times with full-jitter exponential backoff capped at `max_delay`:
a bounded number of tries and a bounded time spent waiting between them.
An endpoint that cannot be connected to at all (refused, no route, unknown
host) is a wrong endpoint or a network that is down far more often than a
blip: it is given up `unreachable_within` seconds after the first try.

Errors are classified by type: connection errors and timeouts of the HTTP
stacks the backends use (aiohttp, botocore, requests, google-auth), and HTTP
statuses 408, 429 and 5xx, are transient; everything else (403, 404, failed
preconditions, bad requests, local file errors) fails at once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

log = logging.getLogger("storage")
T = TypeVar("T")

_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
              ValueError, TypeError)
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN}
_THROTTLING_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
                     "ServiceUnavailable", "InternalError"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 8.0
    unreachable_within: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff after the given (1-based) failed attempt."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@functools.cache
def _types() -> tuple[tuple[type, ...], tuple[type, ...], list[tuple[type, Callable]]]:
    """(unreachable, transient, status readers) from whichever HTTP stacks are installed."""
    unreachable: list[type] = [ConnectionRefusedError, socket.gaierror]
    transient: list[type] = [ConnectionError, TimeoutError]
    status: list[tuple[type, Callable]] = []
    with contextlib.suppress(ImportError):
        import aiohttp
        unreachable.append(aiohttp.ClientConnectorError)
        transient += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
        status.append((aiohttp.ClientResponseError, lambda e: e.status))
    with contextlib.suppress(ImportError):
        import botocore.exceptions as boto
        unreachable.append(boto.EndpointConnectionError)
        transient += [boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError]
        status.append((boto.ClientError, lambda e: e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")))
    with contextlib.suppress(ImportError):
        import requests.exceptions as requests_errors
        transient += [requests_errors.ConnectionError, requests_errors.Timeout,
                      requests_errors.ChunkedEncodingError]
    with contextlib.suppress(ImportError):
        import google.auth.exceptions as auth_errors
        transient.append(auth_errors.TransportError)
    with contextlib.suppress(ImportError):
        from gcsfs.retry import HttpError
        status.append((HttpError, lambda e: e.code))
    return tuple(unreachable), tuple(transient), status


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    for kind, read in _types()[2]:
        if isinstance(exc, kind):
            value = read(exc)
            return value if isinstance(value, int) else None
    return None


def is_unreachable(exc: BaseException) -> bool:
    """The endpoint could not be connected to at all."""
    unreachable = _types()[0]
    return any(isinstance(link, unreachable) or (isinstance(link, OSError) and link.errno in _UNREACHABLE_ERRNOS)
               for link in _chain(exc))


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure; False for permanent ones."""
    if isinstance(exc, _PERMANENT):
        return False
    _, transient, _ = _types()
    for link in _chain(exc):
        status = _status(link)
        if status is not None:
            return status >= 500 or status in (408, 429)
        code = getattr(link, "response", None)
        if isinstance(code, dict) and code.get("Error", {}).get("Code") in _THROTTLING_CODES:
            return True
        if isinstance(link, transient) or (isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS):
            return True
    return is_unreachable(exc)


def add_note(exc: BaseException, note: str) -> None:
    """BaseException.add_note, which Python 3.10 lacks: there the same `__notes__` list (PEP 678),
    which Redactor.describe reads, though 3.10's tracebacks do not print it."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


def with_retries(action: Callable[[], T], what: str, policy: RetryPolicy,
                 describe: Callable[[BaseException], str] = str) -> T:
    """Run `action`, retrying transient failures per `policy`."""
    start = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified below
            elapsed = time.monotonic() - start
            unreachable = is_unreachable(exc)
            last = (attempt == policy.attempts or not is_transient(exc)
                    or (unreachable and elapsed >= policy.unreachable_within))
            if last:
                if attempt > 1:
                    add_note(exc, f"gave up after {attempt} attempts in {elapsed:.1f} s")
                raise
            pause = policy.delay(attempt)
            if unreachable:
                pause = min(pause, max(0.0, policy.unreachable_within - elapsed))
            log.warning("%s: transient failure (attempt %d/%d), retrying in %.2fs: %s",
                        what, attempt, policy.attempts, pause, describe(exc))
            time.sleep(pause)
    raise AssertionError("unreachable")
