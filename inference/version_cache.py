"""A local copy of a remote version directory, made once per machine.

TensorFlow loads from local files (a .cpb in particular is read through a
file descriptor), so a gs:// or s3:// version is downloaded first. Published
versions are never overwritten, so a complete copy stays valid: it is
downloaded into a hidden sibling and renamed into place, and a directory under
its final name is always complete. Several worker processes on one machine may
race; the first rename wins and the others use its copy.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from tf_bigexport.storage import display_uri, local_path, open_store

DEFAULT_CACHE_DIR = os.path.join(tempfile.gettempdir(), "tf-bigexport-versions")


def local_version_dir(uri: str, *, storage_options: dict | None = None,
                      cache_dir: str | os.PathLike | None = None) -> str:
    """A local directory holding the version at ``uri`` (``uri`` itself when local)."""
    local = local_path(uri)
    if local is not None:
        if not os.path.isdir(local):
            raise FileNotFoundError(f"{uri}: no such version directory")
        return local
    root = os.fspath(cache_dir or DEFAULT_CACHE_DIR)
    os.makedirs(root, exist_ok=True)
    shown = display_uri(uri).rstrip("/")
    name = f"{shown.rsplit('/', 2)[-2]}-{shown.rsplit('/', 1)[-1]}-{hashlib.sha256(shown.encode()).hexdigest()[:12]}"
    target = os.path.join(root, name)
    if os.path.isdir(target):
        return target
    partial = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
    try:
        store = open_store(uri, storage_options)
        if not store.download(store.root, partial):
            raise FileNotFoundError(f"{store.uri}: no files under this version directory")
        try:
            os.rename(partial, target)
        except OSError:
            if not os.path.isdir(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
