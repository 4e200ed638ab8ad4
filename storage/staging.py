"""Upload an export to the staging prefix <registry>/.staging/<job_key>/.

Staging is outside every model directory, so nothing there is ever served.
It is idempotent: objects already staged with the right size and checksum are
skipped, so a retried job only uploads what is missing or wrong.
"""

from __future__ import annotations

import logging
import os

from .errors import Mismatch
from .manifest import FileEntry, Manifest
from .names import validate_job_key
from .objects import Store
from .progress import Progress
from .transfer import FileProgress, run_parallel
from .verify import check_entries, native_crc32c, reread_mismatches

log = logging.getLogger("storage")
STAGING_DIR = ".staging"


DRAFTS_DIR = ".drafts"  # job keys start with a letter or digit: no job stages here


def staging_path(store: Store, job_key: str) -> str:
    return store.join(STAGING_DIR, validate_job_key(job_key))


def draft_path(store: Store, job_key: str) -> str:
    """Where a job's release record waits between its program file and the record itself."""
    return store.join(STAGING_DIR, DRAFTS_DIR, f"{validate_job_key(job_key)}.json")


def _already_staged(store: Store, path: str, entry: FileEntry, info: dict | None) -> bool:
    if info is None or int(info.get("size") or 0) != entry.size:
        return False
    crc = native_crc32c(info)
    if crc is not None:
        return crc == entry.crc32c
    return not reread_mismatches(store, path, entry)


def _upload(store: Store, local: str, remote: str, entry: FileEntry, progress: Progress) -> None:
    callback = FileProgress(progress)
    store.put_file(local, remote, callback)
    callback.finish(entry.size)
    progress.file_done(entry.path, entry.size)


def stage(store: Store, local_dir: str, manifest: Manifest, job_key: str, *, workers: int) -> str:
    """Upload every manifest file not yet staged; returns the staging path."""
    dest = staging_path(store, job_key)
    present = store.find_files(dest)
    todo = [e for e in manifest.payload() + manifest.markers()
            if not _already_staged(store, f"{dest}/{e.path}", e, present.get(e.path))]
    skipped = len(manifest.files) - len(todo)
    if skipped:
        log.info("%s: %d of %d files already staged", store.uri_of(dest), skipped, len(manifest.files))
    progress = Progress(f"stage {store.uri_of(dest)}", sum(e.size for e in todo), len(todo))
    tasks = [lambda e=e: _upload(store, os.path.join(local_dir, *e.path.split("/")), f"{dest}/{e.path}",
                                 e, progress)
             for e in todo]
    try:
        run_parallel(tasks, workers)
    finally:
        progress.close()
    return dest


def verify_staged(store: Store, dest: str, manifest: Manifest, paths: list[str] | None, *,
                  workers: int) -> list[Mismatch]:
    entries = manifest.files if paths is None else [
        e for e in manifest.files if e.path in set(paths)]
    unknown = sorted(set(paths or ()) - {e.path for e in manifest.files})
    found = check_entries(store, dest, entries, store.find_files(dest), depth="native", workers=workers,
                          label=f"verify {store.uri_of(dest)}")
    return found + [Mismatch(p, "not in manifest", None, None) for p in unknown]
