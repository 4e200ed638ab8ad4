"""storage.retry without a backend: one retry layer's attempts, back-off and notes.

In the compat suite, so that every supported Python runs it (Python 3.10 has no
BaseException.add_note; the storage tests with emulators run on 3.11 only).
"""
from __future__ import annotations

import errno
import logging

import pytest

from tf_bigexport.storage.redact import Redactor
from tf_bigexport.storage.retry import RetryPolicy, with_retries

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


def test_with_retries_backs_off_on_transient_and_stops_on_permanent(caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
        return "ok"

    with caplog.at_level(logging.WARNING, logger="storage"):
        assert with_retries(flaky, "upload x", FAST) == "ok"
    assert len(calls) == 3
    assert caplog.text.count("upload x: transient failure") == 2

    calls.clear()

    def denied():
        calls.append(1)
        raise PermissionError("403 forbidden")

    with pytest.raises(PermissionError):
        with_retries(denied, "upload y", FAST)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(TimeoutError):
        with_retries(lambda: calls.append(1) or (_ for _ in ()).throw(TimeoutError("t")), "z", FAST)
    assert len(calls) == FAST.attempts
    delays = [RetryPolicy(base_delay=1, max_delay=5).delay(a) for a in range(1, 8)]
    assert all(0 <= d <= 5 for d in delays)


def test_giving_up_says_how_many_attempts_in_the_error_it_raises() -> None:
    def refused() -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")

    with pytest.raises(ConnectionRefusedError) as raised:
        with_retries(refused, "read index.json", RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001,
                                                             unreachable_within=60))
    assert len(raised.value.__notes__) == 1
    assert raised.value.__notes__[0].startswith("gave up after 3 attempts in ")
    assert "(gave up after 3 attempts in " in Redactor().describe(raised.value)
