"""Copy a staged export into its numeric version directory.

Order matters: every payload file first (server-side copies where the backend
can), checked, then saved_model.pb|cpb last. TensorFlow (and this layer)
treat a version directory as complete only once that marker exists, so a
crash at any point leaves either an incomplete directory that only the
claiming job may resume, or a complete, verified one.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from typing import Callable

from . import objects
from .errors import StorageError, VerificationError
from .manifest import MARKER_FILES, FileEntry, Manifest
from .transfer import Progress, RetryPolicy, run_parallel, with_retries
from .uris import Location
from .verify import check_entries, native_crc32c

log = logging.getLogger("storage")


def is_complete(infos: dict[str, dict]) -> bool:
    return any(name in infos for name in MARKER_FILES)


def copy_object(loc: Location, src: str, dst: str) -> None:
    """Copy one object; locally via a temp name + rename so no reader sees half a file."""
    if not loc.is_local:
        loc.fs.cp_file(src, dst)
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.{uuid.uuid4().hex}.partial"
    try:
        try:
            os.link(src, tmp)  # same filesystem: no bytes move
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _matches(info: dict | None, entry: FileEntry) -> bool:
    """Cheap check that a copied object is already right (resume after a crash)."""
    if info is None or int(info.get("size") or 0) != entry.size:
        return False
    crc = native_crc32c(info)
    return crc == entry.crc32c if crc is not None else False


def copy_into_version(loc: Location, staging: str, version_dir: str, manifest: Manifest, *,
                      workers: int, retry: RetryPolicy, describe: Callable[[BaseException], str],
                      after_payload: Callable[[], None]) -> None:
    """Copy staged objects into `version_dir`, markers last, checking each stage."""
    markers = manifest.markers()
    if not markers:
        raise StorageError(f"{loc.uri_of(staging)}: export has no saved_model.pb or "
                           "saved_model.cpb; refusing to publish a version without one")
    present = objects.find_files(loc.fs, version_dir)
    payload = manifest.payload()
    todo = [e for e in payload if not _matches(present.get(e.path), e)]
    progress = Progress(f"commit {loc.uri_of(version_dir)}", sum(e.size for e in todo), len(todo))

    def copy(entry: FileEntry) -> None:
        with_retries(lambda: copy_object(loc, f"{staging}/{entry.path}", f"{version_dir}/{entry.path}"),
                     f"copy {entry.path}", retry, describe)
        progress.add_bytes(entry.size)
        progress.file_done(entry.path, entry.size)

    try:
        run_parallel([lambda e=e: copy(e) for e in todo], workers)
    finally:
        progress.close()
    _check(loc, version_dir, payload, workers, retry, describe)
    after_payload()
    for entry in markers:
        with_retries(lambda e=entry: copy_object(loc, f"{staging}/{e.path}", f"{version_dir}/{e.path}"),
                     f"copy {entry.path}", retry, describe)
    _check(loc, version_dir, manifest.files, workers, retry, describe)


def _check(loc: Location, version_dir: str, entries: list[FileEntry], workers: int,
           retry: RetryPolicy, describe: Callable[[BaseException], str]) -> None:
    infos = objects.find_files(loc.fs, version_dir)
    # Sizes everywhere, plus the backend's crc32c where it keeps one; sources were
    # verified in staging, a full re-read is verify_version's job.
    mismatches = check_entries(loc.fs, version_dir, entries, infos, depth="size",
                               workers=workers, retry=retry, describe=describe)
    if mismatches:
        raise VerificationError(loc.uri_of(version_dir), mismatches)
