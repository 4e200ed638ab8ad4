"""Exit statuses of the tf-bigexport command, and `fail` to report one (a module of its own so
commands need not import the CLI)."""
from __future__ import annotations

import enum
import sys


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # some job failed / verification found mismatches
    USAGE = 2  # bad arguments, a bad jobs file, or a preflight problem: nothing was done
    NOT_REGISTERED = 3  # everything published, but some model registry failed: retry with `register`
    ENVIRONMENT = 4  # TensorFlow missing or outside the supported range (2.15 to 2.21): nothing was done
    NOT_CONVERTIBLE = 5  # `convert`: the source cannot take that form; nothing written or published


def fail(message: object, status: ExitCode = ExitCode.FAILED) -> ExitCode:
    """Prints ``message`` on stderr; returns ``status`` for the command to exit with."""
    print(message, file=sys.stderr)
    return status
