"""How a job's error is shown: one line with the exception type, long TensorFlow messages trimmed."""
from __future__ import annotations


def describe(error: BaseException) -> str:
    if getattr(error, "already_described", False):  # e.g. a child process's error, described there
        return str(error)
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Keep the message whole when short; long TensorFlow errors keep their first and
    # last lines (the last says what went wrong after "in user code:" and a stack).
    if len(text) > 600:
        text = lines[0][:600] + (" ... " + lines[-1][:600] if len(lines) > 1 else " ...")
    return f"{type(error).__name__}: {text}"
