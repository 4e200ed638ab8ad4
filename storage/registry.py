"""Registry: a model registry in object storage, what is in it, and `publish`.

On-storage layout (TensorFlow Serving reads only the numeric directories):

  <registry>/<model>/<version>/...             published SavedModel; complete once
                                               saved_model.pb|cpb exists (written last)
  <registry>/<model>/.claims/<version>.json    create-only claim: which job owns the version
  <registry>/<model>/.releases/<version>.json  release record (record.py)
  <registry>/<model>/index.json                per-model index, derived from the records
  <registry>/.staging/<job_key>/...            uploads in flight; removed after commit
  <registry>/.staging/.drafts/<job_key>.json   a job's release record between its program
                                               file and the record (publication.py)

The publish protocol itself is publication.Publication, which `publish` and
the Beam stages both drive.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from typing import Callable

from .errors import Mismatch, StorageError, VerificationError, VersionConflictError
from .manifest import Manifest, build_manifest
from .names import validate_job_key, validate_model_name, validate_version
from .objects import Store, open_store
from .publication import Publication, draft_path, is_complete
from .record import ReleaseRecord, ReleaseStore
from .redact import Redactor, guarded, masked_call
from .release_state import CLAIMED, DAMAGED, FREE, ORPHANED, PUBLISHED, UNRECORDED, VersionState
from .retry import RetryPolicy
from .verify import check_entries
from .versions import VersionClaims, VersionPolicy

log = logging.getLogger("storage")
PROBE_DIR = ".probe"
StepHook = Callable[[str], None]
# Steps reported to `step_hook`, in order (fault-injection tests stop after each).
PUBLISH_STEPS = ("staged", "verified", "claimed", "copied", "drafted", "marker", "recorded", "indexed",
                 "cleaned")


def _same_files(record: ReleaseRecord, manifest: Manifest) -> None:
    """A job key names one export: re-running it with other files is a caller bug."""
    if record.manifest.by_path() != manifest.by_path():
        raise StorageError(f"{record.uri}: job {record.job_key!r} already published this version "
                           "with different files; use a new job key for a new export")


class Registry:
    """A model registry at `uri` (local path, file://, gs://, s3://, memory://, any fsspec URL)."""

    def __init__(self, uri: str, *, storage_options: dict | None = None, workers: int = 8,
                 retry: RetryPolicy | None = None, step_hook: StepHook | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.store: Store = masked_call(lambda: open_store(uri, storage_options, retry=self.retry),
                                        Redactor(storage_options), "cannot open registry")
        self.redactor = self._redact = self.store.redactor
        self.workers = max(1, workers)
        self.step_hook = step_hook
        self.claims = VersionClaims(self.store)
        self.releases = ReleaseStore(self.store)

    @property
    def uri(self) -> str:
        """Display URI (no credentials)."""
        return self.store.uri

    @property
    def filesystem(self):
        return self.store.fs

    def step(self, name: str) -> None:
        if self.step_hook is not None:
            self.step_hook(name)

    def version_uri(self, model_name: str, version: int) -> str:
        return self.store.uri_of(self.store.join(model_name, str(version)))

    # -- publishing
    def publication(self, model_name: str, job_key: str, manifest: Manifest) -> Publication:
        """Job `job_key`'s way through the publish protocol (see publication.py)."""
        return Publication(self, model_name, job_key, manifest)

    def publish(self, local_dir: str, model_name: str, policy: VersionPolicy,
                release_info: dict, job_key: str) -> ReleaseRecord:
        """Manifest, stage, verify, claim, commit, clean up. Safe to re-run with the same job_key."""
        validate_model_name(model_name)
        validate_job_key(job_key)
        publication = self.publication(model_name, job_key, build_manifest(local_dir))
        record = publication.published()
        if record is not None:
            _same_files(record, publication.manifest)
            log.info("%s: job %s already published it", record.uri, job_key)
        else:
            publication.stage(local_dir)
            self.step("staged")
            mismatches = publication.verify()
            if mismatches:
                publication.clean()  # bytes proven wrong are never published
                raise VerificationError(publication.staging_uri, mismatches)
            self.step("verified")
            version = publication.claim(policy)
            self.step("claimed")
            record = publication.commit(version, release_info)
        publication.clean()
        self.step("cleaned")
        return record

    # -- what is there
    @guarded
    def check_writable(self) -> None:
        """Raise StorageError unless the registry is reachable and takes a write (a preflight).

        Creates and removes one probe object under .probe/ (where the pipeline's
        service account may delete), leaving nothing behind.
        """
        store = self.store
        path = store.join(PROBE_DIR, f"writable-{uuid.uuid4().hex}")
        fresh_root = store.is_local and not os.path.isdir(store.root)
        if not store.create_exclusive(path, b"tf-bigexport write probe\n"):  # (an empty body upsets the GCS emulator)
            raise StorageError(f"{store.uri}: a fresh probe object already exists")
        store.remove_file(path)
        # only if empty: another run may be probing or publishing beside us
        store.remove_empty_dir(store.join(PROBE_DIR))
        if fresh_root:
            store.remove_empty_dir(store.root)

    @guarded
    def release_state(self, model_name: str, version: int) -> VersionState:
        """What `version` of `model_name` is: free, claimed, unrecorded, published, orphaned or damaged."""
        validate_model_name(model_name)
        validate_version(version)
        where = self.version_uri(model_name, version)
        state = functools.partial(VersionState, model_name, version)
        files = self.store.find_files(self.store.join(model_name, str(version)))
        try:
            record = self.releases.read(model_name, version)
            claim = self.claims.read(model_name, version)
        except StorageError as exc:
            return state(DAMAGED, detail=f"{where}: {self._redact.text(exc)}")
        owner = None if claim is None else claim["job_key"]
        if record is not None:
            if not is_complete(files):
                return state(DAMAGED, record.job_key, f"{where}: release record present but no saved_model.pb|cpb",
                             record)
            return state(PUBLISHED, record.job_key, f"published by job {record.job_key}", record)
        if is_complete(files):
            drafted = owner is not None and self.store.info(draft_path(self.store, owner)) is not None
            finish = (f"a rerun of job {owner} (same run id) finishes it" if drafted
                      else "nothing to finish it from: check it by hand")
            return state(UNRECORDED, owner, f"incomplete: program file present but no release record; {finish}")
        if owner is not None:
            return state(CLAIMED, owner, f"incomplete: claimed by job {owner}, not committed ({len(files)} files "
                                         "copied, no program file: TensorFlow sees no model)")
        if files:
            return state(ORPHANED, None, f"{len(files)} files, no claim and no saved_model.pb|cpb")
        return state(FREE, detail="nothing there")

    def check_version_free(self, model_name: str, version: int, job_key: str | None = None) -> VersionState:
        """Raise VersionConflictError unless `version` is free or already held by `job_key`.

        A cheap check before any work (tracing, saving, uploading): the create-only claim at
        commit time still decides a race.
        """
        state = self.release_state(model_name, version)
        if state.state != FREE and not (job_key and state.held_by(job_key)):
            raise VersionConflictError(model_name, version, f"it is {state.state}: {state.detail}")
        return state

    @guarded
    def state_of_job(self, model_name: str, job_key: str) -> VersionState | None:
        """The state of the version `job_key` claimed for `model_name`, or None if it claimed none."""
        validate_model_name(model_name)
        validate_job_key(job_key)
        version = self.claims.find_claim_of(model_name, job_key)
        return None if version is None else self.release_state(model_name, version)

    @guarded
    def verify_version(self, model_name: str, version: int) -> list[Mismatch]:
        """Re-read every published byte and compare with the release record."""
        record = self.read_release_record(model_name, version)
        version_dir = self.store.join(model_name, str(version))
        return check_entries(self.store, version_dir, record.files, self.store.find_files(version_dir),
                             depth="full", workers=self.workers, allow_extra=False,
                             label=f"verify {self.store.uri_of(version_dir)}")

    @guarded
    def read_release_record(self, model_name: str, version: int) -> ReleaseRecord:
        validate_model_name(model_name)
        validate_version(version)
        record = self.releases.read(model_name, version)
        if record is None:
            state = self.release_state(model_name, version)
            raise StorageError(f"{self.version_uri(model_name, version)}: no release record (version not "
                               f"published); it is {state.state}: {state.detail}")
        return record

    @guarded
    def list_versions(self, model_name: str) -> list[int]:
        """Versions with a release record (fully committed), ascending."""
        validate_model_name(model_name)
        return self.releases.versions(model_name)

    @guarded
    def read_index(self, model_name: str) -> dict | None:
        validate_model_name(model_name)
        return self.releases.read_index(model_name)

    @guarded
    def update_index(self, model_name: str) -> dict:
        """Rebuild <model>/index.json from the release records (idempotent); returns it."""
        validate_model_name(model_name)
        return self.releases.update_index(model_name)
