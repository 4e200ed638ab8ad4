"""The one rule for every name that becomes part of an object key.

Jobs-file validation, CLI options and the storage layer all call these, so a
name that passes the jobs file never fails at commit. Patterns use
``fullmatch`` over ASCII classes: ``$`` would accept a trailing newline and
``str.isdigit`` accepts digits of other scripts ("１２", "٣").
"""
from __future__ import annotations

import re

from .errors import InvalidNameError

MAX_VERSION = 2**63 - 1  # TensorFlow Serving versions are int64

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,63}", re.ASCII)
_JOB_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,199}", re.ASCII)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._+=@,~-]{1,255}", re.ASCII)
_VERSION_TEXT = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)

MODEL_NAME_RULE = "1-128 of [A-Za-z0-9._-], starting with a letter or digit, without '..'"
RUN_ID_RULE = "1-64 of [A-Za-z0-9._=-], starting with a letter or digit, without '..'"
VERSION_RULE = "an integer in 1..2**63-1 written in ASCII digits"


def model_name_problem(name: object) -> str | None:
    """Why `name` cannot be a model name, or None if it can."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or ".." in name:
        return f"model name {name!r} is invalid: use {MODEL_NAME_RULE}"
    return None


def run_id_problem(run_id: object) -> str | None:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        return f"run id {run_id!r} is invalid: use {RUN_ID_RULE}"
    return None


def validate_model_name(name: str) -> str:
    problem = model_name_problem(name)
    if problem:
        raise InvalidNameError(problem)
    return name


def validate_job_key(job_key: str) -> str:
    if not isinstance(job_key, str) or not _JOB_KEY.fullmatch(job_key) or ".." in job_key:
        raise InvalidNameError(
            f"job key {job_key!r} is invalid: use 1-200 of [A-Za-z0-9._=-], "
            "starting with a letter or digit, without '..'"
        )
    return job_key


def parse_version(value: object) -> int | None:
    """A version from an int or ASCII-digit text; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _VERSION_TEXT.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 0 < number <= MAX_VERSION else None


def validate_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or parse_version(version) is None:
        raise InvalidNameError(f"version {version!r} is invalid: must be {VERSION_RULE}")
    return version


def safe_relative_path(path: str, *, where: str = "") -> str:
    """A posix path that stays inside the directory it is relative to: no absolute,
    empty, '.' or '..' parts, no backslashes. Object stores allow keys like
    "m/1/../../x"; downloaded naively they would land outside their directory."""
    prefix = f"{where}: " if where else ""
    if not isinstance(path, str) or not path:
        raise InvalidNameError(f"{prefix}empty object path")
    if path.startswith("/") or "\\" in path:
        raise InvalidNameError(f"{prefix}object path {path!r} must be relative and use '/'")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise InvalidNameError(f"{prefix}object path {path!r} has an empty, '.' or '..' segment")
    return path


def validate_relative_path(path: str, *, where: str = "") -> str:
    """A safe relative path (above) whose segments use only [A-Za-z0-9._+=@,~-]: what we publish."""
    for segment in safe_relative_path(path, where=where).split("/"):
        if not _PATH_SEGMENT.fullmatch(segment):
            prefix = f"{where}: " if where else ""
            raise InvalidNameError(
                f"{prefix}object path {path!r}: segment {segment!r} has characters "
                "outside [A-Za-z0-9._+=@,~-]"
            )
    return path
