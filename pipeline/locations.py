"""Model locations for the CLI: a local SavedModel directory or an object-store URI."""
from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from typing import BinaryIO, Iterator

from tf_bigexport.pipeline.options import storage_options_from

PROTO_FILES = ("saved_model.cpb", "saved_model.pb")


def is_remote(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def local_path(location: str) -> str:
    return location[len("file://"):] if location.startswith("file://") else location


def filesystem(location: str):
    import fsspec
    return fsspec.core.url_to_fs(location, **storage_options_from(None))


def safe_relative(location: str, relative: str) -> str:
    """An object name from a listing, refused if it could land outside a local directory.

    Object stores allow keys like "m/1/../../x"; downloaded naively they would be
    written outside the scratch directory.
    """
    parts = relative.split("/")
    if not relative or relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{location}: refusing object {relative!r}: its name has an empty, '.' or '..' "
                         "part, or is absolute (a SavedModel never has one)")
    return relative


def list_files(location: str) -> list[tuple[str, int]]:
    """(relative posix path, size) of every file under the model directory."""
    if not is_remote(location):
        root = local_path(location)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{location}: no such directory")
        return sorted((os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"),
                       os.path.getsize(os.path.join(d, n))) for d, _, names in os.walk(root) for n in names)
    fs, root = filesystem(location)
    root = root.rstrip("/")
    found = fs.find(root, detail=True)
    if not found:
        raise FileNotFoundError(f"{location}: no objects under this prefix")
    return sorted((safe_relative(location, path[len(root) + 1:]), int(info.get("size") or 0))
                  for path, info in found.items())


@contextlib.contextmanager
def local_model_dir(location: str) -> Iterator[str]:
    """A local directory with the model's files (downloaded to a temp dir when remote)."""
    if not is_remote(location):
        path = local_path(location)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{location}: no such directory")
        yield path
        return
    fs, root = filesystem(location)
    root = root.rstrip("/")
    wanted = [p for p, _ in list_files(location)]
    with tempfile.TemporaryDirectory(prefix="tf-bigexport-") as scratch:
        for relative in wanted:
            destination = os.path.join(scratch, *relative.split("/"))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            fs.get_file(posixpath.join(root, relative), destination)
        yield scratch


@contextlib.contextmanager
def open_file(location: str, relative: str) -> Iterator[BinaryIO]:
    """A seekable binary file under the model directory; remote files are read
    by range on demand, so a chunked proto's metadata costs kilobytes, not gigabytes."""
    if not is_remote(location):
        with open(os.path.join(local_path(location), *relative.split("/")), "rb") as f:
            yield f
        return
    fs, root = filesystem(location)
    with fs.open(posixpath.join(root.rstrip("/"), relative), "rb", block_size=1 << 20) as f:
        yield f


def split_version_uri(uri: str) -> tuple[str, str, int]:
    """"<registry>/<model>/<version>" -> (registry, model, version)."""
    trimmed = uri.rstrip("/")
    parent, version = trimmed.rsplit("/", 1) if "/" in trimmed else ("", trimmed)
    registry, model = parent.rsplit("/", 1) if "/" in parent else ("", parent)
    if not version.isdigit() or not model or not registry or registry.endswith(":/"):
        raise ValueError(f"{uri}: expected <registry>/<model>/<version> with a numeric version")
    return registry, model, int(version)
