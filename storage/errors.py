"""Errors raised by the storage layer, and the per-file mismatch they report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mismatch:
    """One file whose stored bytes disagree with what was expected."""

    path: str  # posix path relative to the version/staging directory
    reason: str  # "missing" | "size" | "crc32c" | "sha256" | "unexpected"
    expected: str | int | None
    actual: str | int | None

    def __str__(self) -> str:
        if self.reason == "missing":
            return f"{self.path}: missing (expected {self.expected!r} bytes)"
        if self.reason == "unexpected":
            return f"{self.path}: unexpected ({self.actual!r} bytes, not listed)"
        if self.expected is None and self.actual is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}: {self.reason} (expected {self.expected!r}, got {self.actual!r})"


class StorageError(Exception):
    """Base of every error the storage layer raises. Messages never hold credentials."""


class InvalidNameError(StorageError, ValueError):
    """A model name, job key, object path or URI that the registry refuses."""


class VersionConflictError(StorageError):
    """The version is claimed or published by another job."""

    def __init__(self, model_name: str, version: int, detail: str = "") -> None:
        self.model_name = model_name
        self.version = version
        text = f"version {version} of model {model_name!r} is already claimed by another job"
        super().__init__(f"{text}: {detail}" if detail else text)


class VerificationError(StorageError):
    """Stored objects disagree with the manifest / release record."""

    def __init__(self, where: str, mismatches: list[Mismatch]) -> None:
        self.where = where
        self.mismatches = list(mismatches)
        lines = "\n".join(f"  {m}" for m in self.mismatches)
        files = len({m.path for m in self.mismatches})  # a file can differ in size, crc32c and sha256
        super().__init__(f"{where}: {files} file(s) do not match:\n{lines}")
