"""Version policies and version claims.

A claim is a small JSON object at <model>/.claims/<version>.json naming the job
that owns the version. It is created with a create-only precondition (a local
hard link, GCS ifGenerationMatch=0, S3 If-None-Match: *), so of two publishers
racing for one version exactly one creates it; the other sees the existing
claim and loses (or, under next-integer, tries the next number). A retry with
the same job key finds its claim and continues that version. A backend that
does not honour create-only writes cannot host a registry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import StorageError, VersionConflictError
from .names import MAX_VERSION, validate_version
from .objects import Store, dump_json, load_json_object

log = logging.getLogger("storage")
CLAIMS_DIR = ".claims"
CLAIM_SCHEMA = "tf-bigexport.claim/1"
DAMAGED_CLAIM = "<damaged claim>"
_MAX_CLAIM_ATTEMPTS = 64


@dataclass(frozen=True)
class VersionPolicy:
    """How a publish picks its version number."""

    kind: str  # "explicit" | "next" | "timestamp"
    number: int | None = None

    @classmethod
    def explicit(cls, number: int) -> "VersionPolicy":
        return cls("explicit", validate_version(number))

    @classmethod
    def next_integer(cls) -> "VersionPolicy":
        return cls("next")

    @classmethod
    def timestamp(cls) -> "VersionPolicy":
        """Unix seconds at claim time (bumped past the highest existing version)."""
        return cls("timestamp")

    @classmethod
    def parse(cls, text: str | int) -> "VersionPolicy":
        value = str(text).strip().lower()
        if value in ("next", "next_integer", "next-integer"):
            return cls.next_integer()
        if value == "timestamp":
            return cls.timestamp()
        if value.isdigit():
            return cls.explicit(int(value))
        raise StorageError(f"version policy {text!r} is invalid: use a positive integer, "
                           "'next' or 'timestamp'")

    def first_candidate(self, highest: int) -> int:
        if self.kind == "explicit":
            return self.number
        if self.kind == "next":
            return highest + 1
        return max(int(time.time()), highest + 1)

    def __str__(self) -> str:
        return str(self.number) if self.kind == "explicit" else self.kind


def numeric_names(names: list[str]) -> set[int]:
    return {int(n) for n in names if n.isdigit() and 0 < int(n) <= MAX_VERSION}


class VersionClaims:
    """Create-only claims on version numbers of the models in one registry."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- layout
    def claim_path(self, model: str, version: int) -> str:
        return self._store.join(model, CLAIMS_DIR, f"{version}.json")

    # -- reading
    def parse(self, path: str, data: bytes) -> dict:
        claim = load_json_object(data)
        if claim is None or not isinstance(claim.get("job_key"), str):
            raise StorageError(f"{self._store.uri_of(path)}: damaged claim (not a JSON object naming a job_key)")
        return claim

    def read(self, model: str, version: int) -> dict | None:
        """The claim on `version`, None if there is none; StorageError if it is damaged."""
        path = self.claim_path(model, version)
        data = self._store.read_bytes(path)
        return None if data is None else self.parse(path, data)

    def owner(self, model: str, version: int) -> str | None:
        """Who holds `version`; a damaged claim holds it for nobody we know (DAMAGED_CLAIM)."""
        try:
            claim = self.read(model, version)
        except StorageError as exc:
            log.warning("%s; the version stays taken", exc)
            return DAMAGED_CLAIM
        return None if claim is None else claim["job_key"]

    def claimed_versions(self, model: str) -> set[int]:
        names = self._store.list_names(self._store.join(model, CLAIMS_DIR))
        return numeric_names([n[:-len(".json")] for n in names if n.endswith(".json")])

    def find_claim_of(self, model: str, job_key: str) -> int | None:
        """The version this job already claimed for `model`, if any."""
        paths = {self.claim_path(model, v): v for v in sorted(self.claimed_versions(model))}
        for path, data in sorted(self._store.read_many(list(paths)).items()):
            try:
                claim = self.parse(path, data)
            except StorageError as exc:  # someone else's damaged claim must not stop this job
                log.warning("%s; skipped", exc)
                continue
            if claim["job_key"] == job_key:
                return paths[path]
        return None

    # -- claiming
    def try_claim(self, model: str, version: int, job_key: str) -> bool:
        """True if `job_key` owns `version` afterwards (newly or already)."""
        validate_version(version)
        body = dump_json({
            "schema": CLAIM_SCHEMA, "model_name": model, "version": version, "job_key": job_key,
            "claimed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        })
        self._store.create_exclusive(self.claim_path(model, version), body)
        # Read back: a create whose response was lost and retried finds its own claim
        # "already there"; the owner named inside is what counts.
        return self.owner(model, version) == job_key

    def claim(self, model: str, policy: VersionPolicy, job_key: str,
              published: set[int]) -> int:
        """Claim a version for `job_key` under `policy`; `published` = numeric dirs present."""
        already = self.find_claim_of(model, job_key)
        if already is not None:
            if policy.kind == "explicit" and already != policy.number:
                raise VersionConflictError(
                    model, policy.number,
                    f"job {job_key!r} already claimed version {already} of this model")
            return already
        if policy.kind == "explicit":
            version = policy.number
            if version in published and self.owner(model, version) is None:
                raise VersionConflictError(model, version, "a version directory exists unclaimed")
            if not self.try_claim(model, version, job_key):
                owner = self.owner(model, version)
                raise VersionConflictError(model, version, f"its claim {self._store.uri_of(self.claim_path(model, version))} "
                                           "is damaged" if owner == DAMAGED_CLAIM else f"claim held by job {owner!r}")
            return version
        highest = max(published | self.claimed_versions(model), default=0)
        version = policy.first_candidate(highest)
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            if self.try_claim(model, version, job_key):
                return version
            log.info("version %d of %s taken by another job, trying the next", version, model)
            version += 1
        raise VersionConflictError(model, version, f"gave up after {_MAX_CLAIM_ATTEMPTS} "
                                   "taken versions")
