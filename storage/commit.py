"""Copy a staged export into its numeric version directory.

Order matters: every payload file first (server-side copies where the backend
can), checked, then saved_model.pb|cpb last. TensorFlow (and this layer)
treat a version directory as complete only once that program file exists, so
a crash at any point leaves either an incomplete directory that only the
claiming job may resume, or a complete, verified one.
"""

from __future__ import annotations

from typing import Callable

from tf_bigexport.savedmodel_files import PROGRAM_FILES

from .errors import StorageError, VerificationError
from .manifest import FileEntry, Manifest
from .objects import Store
from .progress import Progress
from .transfer import run_parallel
from .verify import check_entries, native_crc32c


def is_complete(infos: dict[str, dict]) -> bool:
    return any(name in infos for name in PROGRAM_FILES)


def _matches(info: dict | None, entry: FileEntry) -> bool:
    """Cheap check that a copied object is already right (resume after a crash)."""
    if info is None or int(info.get("size") or 0) != entry.size:
        return False
    crc = native_crc32c(info)
    return crc == entry.crc32c if crc is not None else False


def copy_into_version(store: Store, staging: str, version_dir: str, manifest: Manifest, *,
                      workers: int, after_payload: Callable[[], None]) -> None:
    """Copy staged objects into `version_dir`, program file last, checking each stage."""
    markers = manifest.markers()
    if not markers:
        raise StorageError(f"{store.uri_of(staging)}: export has no saved_model.pb or "
                           "saved_model.cpb; refusing to publish a version without one")
    present = store.find_files(version_dir)
    payload = manifest.payload()
    todo = [e for e in payload if not _matches(present.get(e.path), e)]
    # The program file is copied last but counted from the start: a .cpb can be most of the bytes.
    progress = Progress(f"commit {store.uri_of(version_dir)}", sum(e.size for e in todo + markers),
                        len(todo) + len(markers))

    def copy(entry: FileEntry) -> None:
        store.copy(f"{staging}/{entry.path}", f"{version_dir}/{entry.path}")
        progress.add_bytes(entry.size)
        progress.file_done(entry.path, entry.size)

    try:
        run_parallel([lambda e=e: copy(e) for e in todo], workers)
        _check(store, version_dir, payload, workers)
        after_payload()
        for entry in markers:
            copy(entry)
    finally:
        progress.close()
    _check(store, version_dir, manifest.files, workers)


def _check(store: Store, version_dir: str, entries: list[FileEntry], workers: int) -> None:
    # Sizes everywhere, plus the backend's crc32c where it keeps one; sources were
    # verified in staging, a full re-read is verify_version's job.
    mismatches = check_entries(store, version_dir, entries, store.find_files(version_dir), depth="size",
                               workers=workers)
    if mismatches:
        raise VerificationError(store.uri_of(version_dir), mismatches)
