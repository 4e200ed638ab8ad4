"""Model locations for the CLI: a local SavedModel directory or an object-store URI.

Remote ones are read through the storage facade (retries, credential masking),
with the options of $TF_BIGEXPORT_STORAGE_OPTIONS.
"""
from __future__ import annotations

import contextlib
import os
from typing import BinaryIO, Iterator

from tf_bigexport import storage
from tf_bigexport.pipeline.options import storage_options_from


def list_files(location: str) -> list[tuple[str, int]]:
    """(relative posix path, size) of every file under the model directory."""
    root = storage.local_path(location)
    if root is not None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{location}: no such directory")
        return sorted((os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"),
                       os.path.getsize(os.path.join(d, n))) for d, _, names in os.walk(root) for n in names)
    store = storage.open_store(location, storage_options_from(None))
    found = store.find_files(store.root)
    if not found:
        raise FileNotFoundError(f"{location}: no objects under this prefix")
    return sorted((storage.safe_relative_path(rel, where=store.uri), int(info.get("size") or 0))
                  for rel, info in found.items())


def open_registry(uri: str) -> storage.Registry:
    """The registry at `uri` (a local directory or any storage URI)."""
    return storage.Registry(uri, storage_options=storage_options_from(None))


def local_model_dir(location: str, *, check_record: bool = True) -> contextlib.AbstractContextManager[str]:
    """A local directory with the model's files (downloaded to a temp dir when remote, and
    checked against the version's release record when it has one)."""
    return storage.local_directory(location, storage_options_from(None), check_record=check_record)


@contextlib.contextmanager
def open_file(location: str, relative: str) -> Iterator[BinaryIO]:
    """A seekable binary file under the model directory; remote files are read
    by range on demand, so a chunked proto's metadata costs kilobytes, not gigabytes."""
    root = storage.local_path(location)
    if root is not None:
        with open(os.path.join(root, *relative.split("/")), "rb") as f:
            yield f
        return
    store = storage.open_store(location, storage_options_from(None))
    with store.open(store.join(relative)) as f:
        yield f


def split_version_uri(uri: str) -> tuple[str, str, int]:
    """"<registry>/<model>/<version>" -> (registry, model, version)."""
    trimmed = uri.rstrip("/")
    parent, version = trimmed.rsplit("/", 1) if "/" in trimmed else ("", trimmed)
    registry, model = parent.rsplit("/", 1) if "/" in parent else ("", parent)
    if not version.isdigit() or not model or not registry or registry.endswith(":/"):
        raise ValueError(f"{uri}: expected <registry>/<model>/<version> with a numeric version")
    return registry, model, int(version)
