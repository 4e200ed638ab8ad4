"""Registry: the publishing steps the pipeline calls, and `publish` composing them.

On-storage layout (TensorFlow Serving reads only the numeric directories):

  <registry>/<model>/<version>/...             published SavedModel; complete once
                                               saved_model.pb|cpb exists (written last)
  <registry>/<model>/.claims/<version>.json    create-only claim: which job owns the version
  <registry>/<model>/.releases/<version>.json  release record (record.py)
  <registry>/<model>/index.json                per-model index, derived from the records
  <registry>/.staging/<job_key>/...            uploads in flight; removed after commit
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

from .commit import copy_into_version, is_complete
from .errors import Mismatch, StorageError, VerificationError, VersionConflictError
from .manifest import Manifest, build_manifest
from .record import ReleaseRecord, ReleaseStore, utc_now
from .release_state import CLAIMED, DAMAGED, FREE, ORPHANED, PUBLISHED, UNRECORDED, VersionState
from .staging import check_staging_path, stage, staging_path, verify_staged
from .retry import RetryPolicy
from .redact import Redactor
from .names import validate_job_key, validate_model_name, validate_version
from .objects import open_store
from .verify import check_entries
from .versions import VersionClaims, VersionPolicy, numeric_names

log = logging.getLogger("storage")
StepHook = Callable[[str], None]
# Steps reported to `step_hook`, in order (fault-injection tests stop after each).
PUBLISH_STEPS = ("staged", "verified", "claimed", "copied", "marker", "recorded", "indexed",
                 "cleaned")


def _guarded(method):
    """Turn backend exceptions into StorageError with credentials masked."""

    @functools.wraps(method)
    def wrapper(self: "Registry", *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StorageError as exc:
            masked = self._redact.text(exc.args[0]) if exc.args else ""
            if exc.args and masked != exc.args[0]:
                exc.args = (masked, *exc.args[1:])
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised as StorageError
            # `from None`: the original's message may carry a secret.
            raise StorageError(f"{method.__name__} on {self.uri}: {self._redact.describe(exc)}") from None

    return wrapper


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
        try:
            self._store = open_store(uri, storage_options, retry=self.retry)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"cannot open registry: {Redactor(storage_options).describe(exc)}") from None
        self._redact = self._store.redactor
        self.workers = max(1, workers)
        self.step_hook = step_hook
        self._claims = VersionClaims(self._store)
        self._releases = ReleaseStore(self._store)

    @property
    def uri(self) -> str:
        """Display URI (no credentials)."""
        return self._store.uri

    @property
    def filesystem(self):
        return self._store.fs

    def _step(self, name: str) -> None:
        if self.step_hook is not None:
            self.step_hook(name)

    def version_uri(self, model_name: str, version: int) -> str:
        return self._store.uri_of(self._store.join(model_name, str(version)))

    # -- steps
    @_guarded
    def stage(self, local_dir: str, manifest: Manifest, job_key: str) -> str:
        dest = stage(self._store, str(local_dir), manifest, job_key, workers=self.workers)
        return self._store.uri_of(dest)

    @_guarded
    def verify_staged(self, staging_uri: str, manifest: Manifest,
                      paths: list[str] | None = None) -> list[Mismatch]:
        dest = check_staging_path(self._store, self._store.path_of(staging_uri))
        return verify_staged(self._store, dest, manifest, paths, workers=self.workers)

    @_guarded
    def claim_version(self, model_name: str, policy: VersionPolicy, job_key: str) -> int:
        validate_model_name(model_name)
        validate_job_key(job_key)
        published = numeric_names(self._store.list_names(self._store.join(model_name)))
        version = self._claims.claim(model_name, policy, job_key, published)
        log.info("%s: job %s holds version %d", self._store.uri_of(self._store.join(model_name)),
                 job_key, version)
        return version

    @_guarded
    def commit(self, staging_uri: str, model_name: str, version: int, manifest: Manifest,
               release_info: dict, job_key: str) -> ReleaseRecord:
        validate_model_name(model_name)
        validate_version(version)
        validate_job_key(job_key)
        staging = check_staging_path(self._store, self._store.path_of(staging_uri))
        claim = self._claims.read(model_name, version)
        if claim is None or claim.get("job_key") != job_key:
            holder = "nobody" if claim is None else f"job {claim.get('job_key')!r}"
            raise VersionConflictError(model_name, version,
                                       f"job {job_key!r} does not hold the claim ({holder} does)")
        existing = self._releases.read(model_name, version)
        if existing is not None:
            if existing.job_key != job_key:
                raise VersionConflictError(model_name, version, "a release record of another job exists")
            _same_files(existing, manifest)
            self._releases.update_index(model_name)
            return existing
        version_dir = self._store.join(model_name, str(version))
        infos = self._store.find_files(version_dir)
        if is_complete(infos):
            # Crashed after the marker: the version is visible, never rewrite it.
            mismatches = check_entries(self._store, version_dir, manifest.files, infos,
                                       depth="native", workers=self.workers)
            if mismatches:
                raise VerificationError(self._store.uri_of(version_dir), mismatches)
            self._step("copied")
        else:
            copy_into_version(self._store, staging, version_dir, manifest, workers=self.workers,
                              after_payload=lambda: self._step("copied"))
        self._step("marker")
        record = ReleaseRecord.build(
            model_name=model_name, version=version, uri=self._store.uri_of(version_dir),
            job_key=job_key, manifest=manifest, release_info=release_info,
            created=claim.get("claimed_at") or utc_now())
        text = self._redact.text(record.to_json())
        record = ReleaseRecord.from_json(text)  # what is stored is what the caller gets
        self._releases.write(record, text)
        self._step("recorded")
        self._releases.update_index(model_name)
        self._step("indexed")
        log.info("published %s (%d files, %d bytes)", record.uri, len(record.files),
                 record.total_bytes)
        return record

    @_guarded
    def release_state(self, model_name: str, version: int) -> VersionState:
        """What `version` of `model_name` is: free, claimed, unrecorded, published, orphaned or damaged."""
        validate_model_name(model_name)
        validate_version(version)
        where = self.version_uri(model_name, version)
        files = self._store.find_files(self._store.join(model_name, str(version)))
        try:
            record = self._releases.read(model_name, version)
            owner = self._claims.owner(model_name, version)
        except (StorageError, ValueError, AttributeError) as exc:
            return VersionState(model_name, version, DAMAGED, detail=f"{where}: {self._redact.text(exc)}")
        if record is not None:
            if not is_complete(files):
                return VersionState(model_name, version, DAMAGED, record.job_key,
                                    f"{where}: release record present but no saved_model.pb|cpb", record)
            return VersionState(model_name, version, PUBLISHED, record.job_key, f"published by job {record.job_key}",
                                record)
        holder = f"job {owner}" if owner else "no job"
        if is_complete(files):
            return VersionState(model_name, version, UNRECORDED, owner,
                                f"{where}: program file present but no release record (claimed by {holder})")
        if owner is not None:
            return VersionState(model_name, version, CLAIMED, owner,
                                f"claimed by job {owner}, not committed ({len(files)} files copied)")
        if files:
            return VersionState(model_name, version, ORPHANED, None,
                                f"{where}: {len(files)} files, no claim and no saved_model.pb|cpb")
        return VersionState(model_name, version, FREE)

    def check_version_free(self, model_name: str, version: int, job_key: str | None = None) -> VersionState:
        """Raise VersionConflictError unless `version` is free or already held by `job_key`.

        A cheap check before any work (tracing, saving, uploading): the create-only claim at
        commit time still decides a race.
        """
        state = self.release_state(model_name, version)
        if state.state != FREE and not (job_key and state.held_by(job_key)):
            raise VersionConflictError(model_name, version, f"it is {state.state}: {state.detail}")
        return state

    @_guarded
    def state_of_job(self, model_name: str, job_key: str) -> VersionState | None:
        """The state of the version `job_key` claimed for `model_name`, or None if it claimed none."""
        validate_model_name(model_name)
        validate_job_key(job_key)
        version = self._claims.find_claim_of(model_name, job_key)
        return None if version is None else self.release_state(model_name, version)

    @_guarded
    def verify_version(self, model_name: str, version: int) -> list[Mismatch]:
        """Re-read every published byte and compare with the release record."""
        record = self.read_release_record(model_name, version)
        version_dir = self._store.join(model_name, str(version))
        return check_entries(self._store, version_dir, record.files, self._store.find_files(version_dir),
                             depth="full", workers=self.workers, allow_extra=False,
                             label=f"verify {self._store.uri_of(version_dir)}")

    @_guarded
    def read_release_record(self, model_name: str, version: int) -> ReleaseRecord:
        validate_model_name(model_name)
        validate_version(version)
        record = self._releases.read(model_name, version)
        if record is None:
            raise StorageError(f"{self.version_uri(model_name, version)}: no release record "
                               "(version not published)")
        return record

    @_guarded
    def list_versions(self, model_name: str) -> list[int]:
        """Versions with a release record (fully committed), ascending."""
        validate_model_name(model_name)
        return self._releases.versions(model_name)

    @_guarded
    def read_index(self, model_name: str) -> dict | None:
        validate_model_name(model_name)
        return self._releases.read_index(model_name)

    @_guarded
    def update_index(self, model_name: str) -> dict:
        """Rebuild <model>/index.json from the release records (idempotent); returns it."""
        validate_model_name(model_name)
        return self._releases.update_index(model_name)

    @_guarded
    def cleanup_staging(self, staging_uri: str) -> None:
        staging = check_staging_path(self._store, self._store.path_of(staging_uri))
        self._store.remove_tree(staging)

    def find_release(self, model_name: str, job_key: str) -> ReleaseRecord | None:
        """The release record of the version `job_key` published, if it got that far."""
        validate_model_name(model_name)
        validate_job_key(job_key)
        return self._already_published(model_name, job_key)

    @_guarded
    def _already_published(self, model_name: str, job_key: str) -> ReleaseRecord | None:
        version = self._claims.find_claim_of(model_name, job_key)
        record = None if version is None else self._releases.read(model_name, version)
        if record is not None:
            # a crash may have come between the record and the index
            self._releases.update_index(model_name)
        return record

    def publish(self, local_dir: str, model_name: str, policy: VersionPolicy,
                release_info: dict, job_key: str) -> ReleaseRecord:
        """Manifest, stage, verify, claim, commit, clean up. Safe to re-run with the same job_key."""
        validate_model_name(model_name)
        validate_job_key(job_key)
        manifest = build_manifest(local_dir)
        done = self._already_published(model_name, job_key)
        if done is not None:
            _same_files(done, manifest)
            log.info("%s: job %s already published it", done.uri, job_key)
            self.cleanup_staging(self._store.uri_of(staging_path(self._store, job_key)))
            return done
        staging_uri = self.stage(local_dir, manifest, job_key)
        try:
            self._step("staged")
            mismatches = self.verify_staged(staging_uri, manifest)
            if mismatches:
                raise VerificationError(staging_uri, mismatches)
            self._step("verified")
            version = self.claim_version(model_name, policy, job_key)
            self._step("claimed")
            record = self.commit(staging_uri, model_name, version, manifest, release_info, job_key)
        finally:
            self.cleanup_staging(staging_uri)
        self._step("cleaned")
        return record
