"""What state one version number of a model is in, read from the registry.

Readers (the CLI's preflight, `verify`, `gc`) ask this instead of poking at
claims, directories and records themselves, so every one of them names the
same states the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .record import ReleaseRecord

FREE = "free"  # nothing there: no claim, no directory, no record
CLAIMED = "claimed"  # a job holds the claim; no program file yet (payload may be partly copied)
UNRECORDED = "unrecorded"  # program file present, no release record: visible to TensorFlow, unknown to us
PUBLISHED = "published"  # release record and program file present
ORPHANED = "orphaned"  # a numeric directory nobody claims and TensorFlow ignores (no program file)
DAMAGED = "damaged"  # a claim or record that cannot be read, or a record whose program file is gone


@dataclass(frozen=True)
class VersionState:
    model_name: str
    version: int
    state: str  # one of the constants above
    job_key: str | None = None  # the job holding the claim or named by the record
    detail: str = ""  # one line for people
    record: "ReleaseRecord | None" = None

    def held_by(self, job_key: str) -> bool:
        return self.job_key == job_key and self.state in (CLAIMED, UNRECORDED, PUBLISHED)

    def __str__(self) -> str:
        return f"{self.model_name} version {self.version}: {self.state}" + (f" ({self.detail})" if self.detail else "")
