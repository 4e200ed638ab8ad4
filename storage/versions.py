"""Version policies and version claims.

A claim is a small JSON object at <model>/.claims/<version>.json naming the job
that owns the version. It is created with a create-only precondition, so of
two publishers racing for one version exactly one creates it; the other sees
the existing claim and loses (or, under next-integer, tries the next number).
A retry with the same job key finds its claim and continues that version.

Backends that ignore create-only preconditions (gcp-storage-emulator ignores
ifGenerationMatch) are detected once with a probe object; there each
contender writes its own bid <model>/.claims/<version>.bids/<job_key>.json
and the bid with the lowest object generation wins. That is exact on a store
whose generations grow in the order writes take effect (the emulator serves
requests one at a time and stamps generation from a nanosecond clock); the
winner then writes the ordinary claim object.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from . import objects
from .errors import StorageError, VersionConflictError
from .names import MAX_VERSION, validate_version
from .uris import Location

log = logging.getLogger("storage")
CLAIMS_DIR = ".claims"
BIDS_SUFFIX = ".bids"
CLAIM_SCHEMA = "tf-bigexport.claim/1"
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

    def __init__(self, loc: Location, *, exclusive_create: bool | None = None) -> None:
        self._loc = loc
        self._exclusive = exclusive_create  # None: probe on first use
        self._probe_lock = threading.Lock()

    # -- layout
    def claims_dir(self, model: str) -> str:
        return self._loc.join(model, CLAIMS_DIR)

    def claim_path(self, model: str, version: int) -> str:
        return self._loc.join(model, CLAIMS_DIR, f"{version}.json")

    def _bids_dir(self, model: str, version: int) -> str:
        return self._loc.join(model, CLAIMS_DIR, f"{version}{BIDS_SUFFIX}")

    # -- backend capability
    @property
    def exclusive_create(self) -> bool:
        """Whether the backend refuses a create-only write to an existing object."""
        with self._probe_lock:
            if self._exclusive is None:
                self._exclusive = self._probe_exclusive_create()
        return self._exclusive

    def _probe_exclusive_create(self) -> bool:
        if self._loc.is_local:
            return True
        path = self._loc.join(".probe", f"create-only-{uuid.uuid4().hex}")
        try:
            if not objects.create_exclusive(self._loc.fs, path, b"1"):
                raise StorageError(f"{self._loc.uri}: fresh probe object unexpectedly exists")
            honoured = not objects.create_exclusive(self._loc.fs, path, b"2")
        finally:
            # only our own object: other processes may be probing beside it
            objects.remove_file(self._loc.fs, path)
        if not honoured:
            log.warning("%s: the backend ignores create-only preconditions; version claims "
                        "fall back to generation-ordered bids", self._loc.uri)
        return honoured

    # -- reading
    def owner(self, model: str, version: int) -> str | None:
        claim = objects.read_json_or_none(self._loc.fs, self.claim_path(model, version))
        return None if claim is None else claim.get("job_key")

    def claimed_versions(self, model: str) -> set[int]:
        """Versions with a claim or a bid (a bid alone still takes the number)."""
        names = objects.list_names(self._loc.fs, self.claims_dir(model))
        stems = [n[:-len(".json")] if n.endswith(".json") else
                 n[:-len(BIDS_SUFFIX)] if n.endswith(BIDS_SUFFIX) else n for n in names]
        return numeric_names(stems)

    def find_claim_of(self, model: str, job_key: str) -> int | None:
        """The version this job already claimed for `model`, if any."""
        files = objects.find_files(self._loc.fs, self.claims_dir(model))
        claim_paths = [self._loc.join(model, CLAIMS_DIR, rel) for rel in files
                       if "/" not in rel and rel.endswith(".json") and rel[:-5].isdigit()]
        for path, claim in sorted(objects.read_many_json(self._loc.fs, claim_paths).items()):
            if claim.get("job_key") == job_key:
                return int(claim["version"])
        # A bid of ours whose claim object was never written (crash in between).
        for rel in files:
            head, _, tail = rel.partition("/")
            if tail == f"{job_key}.json" and head.endswith(BIDS_SUFFIX):
                version = int(head[:-len(BIDS_SUFFIX)])
                if self._decide_bids(model, version, job_key):
                    return version
        return None

    # -- claiming
    def _claim_body(self, model: str, version: int, job_key: str) -> bytes:
        return objects.dump_json({
            "schema": CLAIM_SCHEMA, "model_name": model, "version": version,
            "job_key": job_key,
            "claimed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        })

    def try_claim(self, model: str, version: int, job_key: str) -> bool:
        """True if `job_key` owns `version` afterwards (newly or already)."""
        validate_version(version)
        path = self.claim_path(model, version)
        body = self._claim_body(model, version, job_key)
        if self.exclusive_create:
            objects.create_exclusive(self._loc.fs, path, body)
        else:
            owner = self.owner(model, version)
            if owner is not None:
                return owner == job_key
            if not self._decide_bids(model, version, job_key):
                return False
        # Read back: also catches a store whose create-only check is not atomic
        # with the write (a racing create that overwrote ours).
        return self.owner(model, version) == job_key

    def _decide_bids(self, model: str, version: int, job_key: str) -> bool:
        """Generation-ordered bidding, for backends without create-only writes."""
        fs = self._loc.fs
        bids_dir = self._bids_dir(model, version)
        mine = f"{bids_dir}/{job_key}.json"
        if objects.info_or_none(fs, mine) is None:
            # written once: rewriting would give the bid a later generation
            objects.write_bytes(fs, mine, self._claim_body(model, version, job_key))
        bids = objects.find_files(fs, bids_dir)
        if any("generation" not in info for info in bids.values()):
            raise StorageError(f"{self._loc.uri}: backend has neither create-only writes nor "
                               "object generations; cannot claim versions exclusively")
        winner = min(bids, key=lambda rel: (int(bids[rel]["generation"]), rel))
        if winner != f"{job_key}.json":
            return False
        # create-only even here: harmless where ignored, and it keeps a claim made by a
        # publisher that saw working preconditions from being overwritten
        objects.create_exclusive(fs, self.claim_path(model, version),
                                 self._claim_body(model, version, job_key))
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
                raise VersionConflictError(model, version, f"claim held by job {self.owner(model, version)!r}")
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
