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
- staging (<registry>/.staging/<job_key>/) is outside every model directory,
  so nothing there is ever served; objects already staged with the right size
  and checksum are skipped, so a retried job uploads only what is missing;
- staging is removed only after a commit, or when verification proved the
  staged bytes wrong; a failed claim or commit keeps it;
- a commit copies every payload file first (server-side where the backend
  can), checks them, then saved_model.pb|cpb last. TensorFlow (and this
  layer) treat a version directory as complete only once that program file
  exists, so a crash leaves either an incomplete directory that only the
  claiming job may resume, or a complete, verified one.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from tf_bigexport.savedmodel_files import PROGRAM_FILES

from .errors import Mismatch, StorageError, VerificationError, VersionConflictError
from .manifest import FileEntry, Manifest
from .names import validate_job_key, validate_model_name, validate_version
from .objects import Store, dump_json
from .progress import Progress
from .record import ReleaseRecord, utc_now
from .redact import guarded
from .transfer import FileProgress, run_parallel
from .verify import check_entries, native_crc32c, reread_mismatches
from .versions import VersionPolicy, numeric_names

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("storage")
STAGING_DIR = ".staging"
DRAFTS_DIR = ".drafts"  # job keys start with a letter or digit: no job stages here


def staging_path(store: Store, job_key: str) -> str:
    return store.join(STAGING_DIR, validate_job_key(job_key))


def draft_path(store: Store, job_key: str) -> str:
    """Where a job's release record waits between its program file and the record itself."""
    return store.join(STAGING_DIR, DRAFTS_DIR, f"{validate_job_key(job_key)}.json")


def is_complete(infos: dict[str, dict]) -> bool:
    return any(name in infos for name in PROGRAM_FILES)


def _already_there(info: dict | None, entry: FileEntry) -> bool | None:
    """Whether a stored object already is `entry`, by size and the backend's own crc32c;
    None when the sizes agree but the backend keeps no crc32c (only a re-read can tell)."""
    if info is None or int(info.get("size") or 0) != entry.size:
        return False
    crc = native_crc32c(info)
    return None if crc is None else crc == entry.crc32c


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
        present = self._store.find_files(self._staging)
        todo = [e for e in self.manifest.payload() + self.manifest.markers()
                if not self._is_staged(e, present.get(e.path))]
        skipped = len(self.manifest.files) - len(todo)
        if skipped:
            log.info("%s: %d of %d files already staged", self.staging_uri, skipped, len(self.manifest.files))
        progress = Progress(f"stage {self.staging_uri}", sum(e.size for e in todo), len(todo))

        def upload(entry: FileEntry) -> None:
            callback = FileProgress(progress)
            self._store.put_file(os.path.join(str(local_dir), *entry.path.split("/")),
                                 f"{self._staging}/{entry.path}", callback)
            callback.finish(entry.size)
            progress.file_done(entry.path, entry.size)

        try:
            run_parallel([lambda e=e: upload(e) for e in todo], self.registry.workers)
        finally:
            progress.close()
        return self.staging_uri

    @guarded
    def verify(self, paths: list[str] | None = None) -> list[Mismatch]:
        """Staged objects (all, or `paths`) against the manifest."""
        files = self.manifest.files
        entries = files if paths is None else [e for e in files if e.path in set(paths)]
        unknown = sorted(set(paths or ()) - {e.path for e in files})
        found = check_entries(self._store, self._staging, entries, self._store.find_files(self._staging),
                              depth="native", workers=self.registry.workers, label=f"verify {self.staging_uri}")
        return found + [Mismatch(p, "not in manifest", None, None) for p in unknown]

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
                self._copy_into(version_dir, record)
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

    # -- internals
    def _is_staged(self, entry: FileEntry, info: dict | None) -> bool:
        there = _already_there(info, entry)
        if there is None:
            return not reread_mismatches(self._store, f"{self._staging}/{entry.path}", entry)
        return there

    def _copy_into(self, version_dir: str, record: ReleaseRecord) -> None:
        """Copy the staged objects into `version_dir`: payload, checked; the draft record; the
        program file last; all checked again."""
        markers = self.manifest.markers()
        if not markers:
            raise StorageError(f"{self.staging_uri}: export has no saved_model.pb or "
                               "saved_model.cpb; refusing to publish a version without one")
        present = self._store.find_files(version_dir)
        payload = self.manifest.payload()
        todo = [e for e in payload if _already_there(present.get(e.path), e) is not True]
        # The program file is copied last but counted from the start: a .cpb can be most of the bytes.
        progress = Progress(f"commit {self._store.uri_of(version_dir)}", sum(e.size for e in todo + markers),
                            len(todo) + len(markers))

        def copy(entry: FileEntry) -> None:
            self._store.copy(f"{self._staging}/{entry.path}", f"{version_dir}/{entry.path}")
            progress.add_bytes(entry.size)
            progress.file_done(entry.path, entry.size)

        try:
            run_parallel([lambda e=e: copy(e) for e in todo], self.registry.workers)
            # Sizes, plus the backend's crc32c where it keeps one: the sources were verified in
            # staging, a full re-read is verify_version's job.
            self._check(version_dir, payload, depth="size")
            self._write_draft(record)
            for entry in markers:
                copy(entry)
        finally:
            progress.close()
        self._check(version_dir, self.manifest.files, depth="size")

    def _check(self, version_dir: str, entries: list[FileEntry], *, depth: str, allow_extra: bool = True) -> None:
        mismatches = check_entries(self._store, version_dir, entries, self._store.find_files(version_dir),
                                   depth=depth, workers=self.registry.workers, allow_extra=allow_extra)
        if mismatches:
            raise VerificationError(self._store.uri_of(version_dir), mismatches)

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
        self._check(self._version_dir(version), record.files, depth="native", allow_extra=False)
        log.info("%s: finishing the commit of job %s from what is there", where, self.job_key)
        self.registry.releases.write(record)
        return record
