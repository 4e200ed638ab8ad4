"""A local copy of a remote version directory, made once per machine, and a bound on how many stay.

TensorFlow loads from local files (a .cpb in particular is read through a
file descriptor), so a gs:// or s3:// version is downloaded first, checked
against its release record (storage.download_version). Published versions are
never overwritten, so a complete copy stays valid: it is downloaded into a
hidden sibling and renamed into place, and a directory under its final name is
always complete and checked. Several worker processes on one machine may race;
the first rename wins and the others use its copy.

Each use touches the copy; after a download, copies beyond the `keep` most
recently used are removed once nobody has used them for IDLE_SECONDS (a
loaded model no longer needs its files, and a process that has just found a
copy has touched it), as are hidden partial downloads a killed process left.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time

from tf_bigexport.storage import checked_local_version, display_uri, download_version, local_path

DEFAULT_CACHE_DIR = os.path.join(tempfile.gettempdir(), "tf-bigexport-versions")
DEFAULT_KEEP = 3
IDLE_SECONDS = 15 * 60
# A partial download's directory is written when each file starts: a day covers any file.
ABANDONED_PARTIAL_SECONDS = 24 * 3600

log = logging.getLogger("tf_bigexport")


def local_version_dir(uri: str, *, storage_options: dict | None = None,
                      cache_dir: str | os.PathLike | None = None, keep: int = DEFAULT_KEEP) -> str:
    """A local directory holding the version at ``uri`` (``uri`` itself when local, checked by size)."""
    if local_path(uri) is not None:
        return checked_local_version(uri)
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the copy in use), got {keep}")
    root = os.fspath(cache_dir or DEFAULT_CACHE_DIR)
    os.makedirs(root, exist_ok=True)
    shown = display_uri(uri).rstrip("/")
    name = f"{shown.rsplit('/', 2)[-2]}-{shown.rsplit('/', 1)[-1]}-{hashlib.sha256(shown.encode()).hexdigest()[:12]}"
    target = os.path.join(root, name)
    if _touch(target):
        return target
    partial = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
    try:
        download_version(uri, partial, storage_options)
        try:
            os.rename(partial, target)
        except OSError:
            if not os.path.isdir(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _touch(target)
    evict(root, keep=keep)
    return target


def evict(root: str, *, keep: int = DEFAULT_KEEP, now: float | None = None) -> list[str]:
    """Remove idle copies beyond the `keep` most recently used, and abandoned partials; returns their paths."""
    now = time.time() if now is None else now
    copies, removed = [], []
    for entry in os.scandir(root):
        if not entry.is_dir(follow_symlinks=False):
            continue
        age = now - entry.stat(follow_symlinks=False).st_mtime
        if entry.name.startswith("."):
            if age > ABANDONED_PARTIAL_SECONDS:
                removed.append(entry.path)
        else:
            copies.append((age, entry.path))
    copies.sort()
    removed += [path for age, path in copies[keep:] if age > IDLE_SECONDS]
    for path in removed:
        log.info("version cache: removing %s (not used recently)", path)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _touch(path: str) -> bool:
    """Marks the copy at `path` as just used; False if there is none."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False
