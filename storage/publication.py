"""The publish protocol of one job, as one object both drivers use.

    published? --> stage --> verify --> claim --> commit (payload, draft, program file,
                                                          record, index) --> clean

`Registry.publish` runs the steps in one call; the Beam stages (transforms/
stage, verify, commit) run them one stage at a time, each building the same
Publication from the job key and manifest they carry. Every step is
idempotent and keyed by the job key, so a retried bundle, a rerun with the
same run id, or a process killed at any point picks up where it stopped:

- `published()` comes first: a job whose version is recorded, or visible
  (program file present) with its record drafted beside its staging
  (<registry>/.staging/.drafts/<job_key>.json, written before the program
  file), is finished from what is there and never uploads again;
- staging is removed only after a commit, or when verification proved the
  staged bytes wrong; a failed claim or commit keeps it, so a retry uploads
  only what is missing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .commit import copy_into_version, is_complete
from .errors import Mismatch, StorageError, VerificationError, VersionConflictError
from .manifest import Manifest
from .names import validate_job_key, validate_model_name, validate_version
from .objects import dump_json
from .record import ReleaseRecord, utc_now
from .redact import guarded
from .staging import draft_path, stage, staging_path, verify_staged
from .verify import check_entries
from .versions import VersionPolicy, numeric_names

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("storage")


class Publication:
    """Job `job_key` publishing the export described by `manifest` as a version of `model_name`."""

    def __init__(self, registry: "Registry", model_name: str, job_key: str, manifest: Manifest) -> None:
        self.registry = registry
        self.model_name = validate_model_name(model_name)
        self.job_key = validate_job_key(job_key)
        self.manifest = manifest
        self._store = registry.store
        self._staging = staging_path(self._store, job_key)
        self._draft_path = draft_path(self._store, job_key)
        self._redact = registry.redactor
        self.uri = registry.uri

    @property
    def staging_uri(self) -> str:
        return self._store.uri_of(self._staging)

    def _version_dir(self, version: int) -> str:
        return self._store.join(self.model_name, str(version))

    # -- the steps
    @guarded
    def published(self) -> ReleaseRecord | None:
        """The release of this job if it got that far, finishing a commit cut short after the
        program file was written; None if the job has yet to publish."""
        version = self.registry.claims.find_claim_of(self.model_name, self.job_key)
        if version is None:
            return None
        record = self.registry.releases.read(self.model_name, version)
        if record is None and is_complete(self._store.find_files(self._version_dir(version))):
            record = self._record_what_is_there(version)
        if record is not None:
            self.registry.releases.update_index(self.model_name)  # a crash may have come before it
        return record

    @guarded
    def stage(self, local_dir: str) -> str:
        """Upload what is not yet staged; returns the staging URI."""
        stage(self._store, str(local_dir), self.manifest, self.job_key, workers=self.registry.workers)
        return self.staging_uri

    @guarded
    def verify(self, paths: list[str] | None = None) -> list[Mismatch]:
        """Staged objects (all, or `paths`) against the manifest."""
        return verify_staged(self._store, self._staging, self.manifest, paths, workers=self.registry.workers)

    @guarded
    def claim(self, policy: VersionPolicy) -> int:
        published = numeric_names(self._store.list_names(self._store.join(self.model_name)))
        version = self.registry.claims.claim(self.model_name, policy, self.job_key, published)
        log.info("%s: job %s holds version %d", self._store.uri_of(self._store.join(self.model_name)),
                 self.job_key, version)
        return version

    @guarded
    def commit(self, version: int, release_info: dict) -> ReleaseRecord:
        """Copy the staged export into `version` (program file last) and record it."""
        validate_version(version)
        claim = self.registry.claims.read(self.model_name, version)
        if claim is None or claim.get("job_key") != self.job_key:
            holder = "nobody" if claim is None else f"job {claim.get('job_key')!r}"
            raise VersionConflictError(self.model_name, version,
                                       f"job {self.job_key!r} does not hold the claim ({holder} does)")
        record = self.registry.releases.read(self.model_name, version)
        if record is None:
            version_dir = self._version_dir(version)
            if is_complete(self._store.find_files(version_dir)):
                record = self._record_what_is_there(version)  # crashed after the program file
            else:
                record = self._draft(version, release_info, claim)
                copy_into_version(self._store, self._staging, version_dir, self.manifest,
                                  workers=self.registry.workers, after_payload=lambda: self._write_draft(record))
                self.registry.step("marker")
                self.registry.releases.write(record)
            self.registry.step("recorded")
        elif record.job_key != self.job_key:
            raise VersionConflictError(self.model_name, version, "a release record of another job exists")
        self.registry.releases.update_index(self.model_name)
        self.registry.step("indexed")
        log.info("published %s (%d files, %d bytes)", record.uri, len(record.files), record.total_bytes)
        return record

    @guarded
    def clean(self) -> None:
        """Remove this job's staging (after a commit, or once its bytes were proven wrong)."""
        self._store.remove_tree(self._staging)
        self._store.remove_file(self._draft_path)
        self._store.remove_empty_dir(self._draft_path.rsplit("/", 1)[0])

    # -- commit internals
    def _draft(self, version: int, release_info: dict, claim: dict) -> ReleaseRecord:
        record = ReleaseRecord.build(
            model_name=self.model_name, version=version, uri=self._store.uri_of(self._version_dir(version)),
            job_key=self.job_key, manifest=self.manifest, release_info=release_info,
            created=claim.get("claimed_at") or utc_now())
        # what is stored is what the caller gets: credentials masked
        return ReleaseRecord.from_json(self._redact.text(record.to_json()))

    def _write_draft(self, record: ReleaseRecord) -> None:
        self.registry.step("copied")
        # The record to be, written before the program file makes the version visible:
        # a crash between the two is finished from it (see published()).
        self._store.write_bytes(self._draft_path, dump_json(record.to_dict()))
        self.registry.step("drafted")

    def _record_what_is_there(self, version: int) -> ReleaseRecord:
        """The drafted record of a version whose program file is in place, checked against its files."""
        where = self._store.uri_of(self._version_dir(version))
        draft = self._store.read_bytes(self._draft_path)
        record = None if draft is None else ReleaseRecord.from_json(draft, where=self._store.uri_of(self._draft_path))
        if record is None or (record.model_name, record.version, record.job_key) != (
                self.model_name, version, self.job_key):
            raise StorageError(f"{where}: incomplete: program file present but no release record, and no "
                               f"record drafted by job {self.job_key!r} to finish it from; check it by hand "
                               "(tf-bigexport verify)")
        infos = self._store.find_files(self._version_dir(version))
        mismatches = check_entries(self._store, self._version_dir(version), record.files, infos,
                                   depth="native", workers=self.registry.workers, allow_extra=False)
        if mismatches:
            raise VerificationError(where, mismatches)
        log.info("%s: finishing the commit of job %s from what is there", where, self.job_key)
        self.registry.releases.write(record)
        return record
