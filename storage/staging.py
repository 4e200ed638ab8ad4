"""Upload an export to the staging prefix <registry>/.staging/<job_key>/.

Staging is outside every model directory, so nothing there is ever served.
It is idempotent: objects already staged with the right size and checksum are
skipped, so a retried job only uploads what is missing or wrong.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from . import objects
from .errors import InvalidNameError, Mismatch
from .manifest import FileEntry, Manifest
from .transfer import FileProgress, Progress, RetryPolicy, run_parallel, with_retries
from .names import validate_job_key
from .uris import Location
from .verify import check_entries, native_crc32c, reread_mismatches

log = logging.getLogger("storage")
STAGING_DIR = ".staging"


def staging_path(loc: Location, job_key: str) -> str:
    return loc.join(STAGING_DIR, validate_job_key(job_key))


def check_staging_path(loc: Location, path: str) -> str:
    """Refuse anything but <registry>/.staging/<job_key> (cleanup deletes recursively)."""
    rel = path[len(loc.root) + 1:] if path.startswith(loc.root + "/") else ""
    head, _, job_key = rel.partition("/")
    if head != STAGING_DIR or not job_key or "/" in job_key:
        raise InvalidNameError(f"{loc.uri_of(path) if rel else path!r} is not a staging "
                               f"directory of {loc.uri} (<registry>/{STAGING_DIR}/<job_key>)")
    validate_job_key(job_key)
    return path


def _already_staged(loc: Location, path: str, entry: FileEntry, info: dict | None) -> bool:
    if info is None or int(info.get("size") or 0) != entry.size:
        return False
    crc = native_crc32c(info)
    if crc is not None:
        return crc == entry.crc32c
    return not reread_mismatches(loc.fs, path, entry)


# gcsfs sends files under this size as one multipart request (read whole, as it does).
_GCS_SIMPLE_UPLOAD_LIMIT = 5 << 20


def _ends_with_cr(local: str, size: int) -> bool:
    with open(local, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\r"


def _put(loc: Location, local: str, remote: str, size: int, callback: FileProgress) -> None:
    if loc.is_local:
        os.makedirs(os.path.dirname(remote), exist_ok=True)
    if (loc.protocol in ("gs", "gcs") and 0 < size < _GCS_SIMPLE_UPLOAD_LIMIT
            and _ends_with_cr(local, size)):
        # gcp-storage-emulator's multipart parser drops a trailing b"\r" from the
        # object; a one-chunk resumable upload (chunksize == size) has no multipart
        # body. Same bytes in memory as gcsfs's own small-file path.
        with open(local, "rb") as f:
            loc.fs.pipe_file(remote, f.read(), chunksize=size)
        return
    # put_file streams: gcsfs/s3fs send big files in chunks, never whole.
    loc.fs.put_file(local, remote, callback=callback)


def _upload(loc: Location, local: str, remote: str, entry: FileEntry, progress: Progress,
            retry: RetryPolicy, describe: Callable[[BaseException], str]) -> None:
    callback = FileProgress(progress)

    def attempt() -> None:
        callback.restart()
        _put(loc, local, remote, entry.size, callback)

    with_retries(attempt, f"upload {entry.path}", retry, describe)
    callback.finish(entry.size)
    progress.file_done(entry.path, entry.size)


def stage(loc: Location, local_dir: str, manifest: Manifest, job_key: str, *, workers: int,
          retry: RetryPolicy, describe: Callable[[BaseException], str]) -> str:
    """Upload every manifest file not yet staged; returns the staging path."""
    dest = staging_path(loc, job_key)
    present = objects.find_files(loc.fs, dest)
    todo = [e for e in manifest.payload() + manifest.markers()
            if not _already_staged(loc, f"{dest}/{e.path}", e, present.get(e.path))]
    skipped = len(manifest.files) - len(todo)
    if skipped:
        log.info("%s: %d of %d files already staged", loc.uri_of(dest), skipped, len(manifest.files))
    progress = Progress(f"stage {loc.uri_of(dest)}", sum(e.size for e in todo), len(todo))
    tasks = [
        lambda e=e: _upload(loc, os.path.join(local_dir, *e.path.split("/")), f"{dest}/{e.path}",
                            e, progress, retry, describe)
        for e in todo
    ]
    try:
        run_parallel(tasks, workers)
    finally:
        progress.close()
    return dest


def verify_staged(loc: Location, dest: str, manifest: Manifest, paths: list[str] | None, *,
                  workers: int, retry: RetryPolicy,
                  describe: Callable[[BaseException], str]) -> list[Mismatch]:
    entries = manifest.files if paths is None else [
        e for e in manifest.files if e.path in set(paths)]
    unknown = sorted(set(paths or ()) - {e.path for e in manifest.files})
    infos = objects.find_files(loc.fs, dest)
    found = check_entries(loc.fs, dest, entries, infos, depth="native", workers=workers,
                          retry=retry, describe=describe, label=f"verify {loc.uri_of(dest)}")
    return found + [Mismatch(p, "not in manifest", None, None) for p in unknown]
