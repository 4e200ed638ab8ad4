"""Small object-store primitives over fsspec that never trust listing caches.

gcsfs and s3fs cache directory listings; other publishers change the bucket
behind our back, so every metadata read here drops the cached entry first.
"""

from __future__ import annotations

import json
import os
import uuid

import fsspec


def _fresh(fs: fsspec.AbstractFileSystem, path: str) -> None:
    fs.invalidate_cache(path)


def info_or_none(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    _fresh(fs, path)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    return info if info.get("type") == "file" else None


def list_names(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """Base names of the direct children of `directory` ([] when absent)."""
    _fresh(fs, directory)
    try:
        entries = fs.ls(directory, detail=False)
    except FileNotFoundError:
        return []
    return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})


def find_files(fs: fsspec.AbstractFileSystem, directory: str) -> dict[str, dict]:
    """All files under `directory`, keyed by path relative to it, with their info."""
    _fresh(fs, directory)
    try:
        found = fs.find(directory, detail=True)
    except FileNotFoundError:
        return {}
    prefix = fs._strip_protocol(directory).rstrip("/") + "/"
    out = {}
    for name, info in found.items():
        name = fs._strip_protocol(name)
        if info.get("type") == "file" and name.startswith(prefix):
            out[name[len(prefix):]] = info
    return out


def read_bytes_or_none(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    _fresh(fs, path)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def read_json_or_none(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    data = read_bytes_or_none(fs, path)
    return None if data is None else json.loads(data)


def read_many_json(fs: fsspec.AbstractFileSystem, paths: list[str]) -> dict[str, dict]:
    """Read several small JSON objects (concurrently on async backends); absent ones are skipped."""
    if not paths:
        return {}
    for path in paths:
        _fresh(fs, path)
    raw = fs.cat(paths, on_error="return")
    return {p: json.loads(v) for p, v in raw.items() if isinstance(v, (bytes, bytearray))}


def dump_json(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Overwrite `path` whole. Local files are replaced atomically (temp + rename)."""
    if _is_local(fs):
        tmp = _write_local_temp(path, data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)
    _fresh(fs, path)


def _write_local_temp(path: str, data: bytes) -> str:
    """A complete, fsynced sibling of `path`, to be renamed or linked into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create `path` holding `data` only if it does not exist. False if it already did.

    Local: a complete temp file hard-linked into place (link fails if the name
    exists), so readers never see a partial object. Object stores: a create-only
    precondition (GCS ifGenerationMatch=0, S3 If-None-Match: *), via
    fsspec's pipe_file(mode="create").
    """
    if _is_local(fs):
        tmp = _write_local_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    finally:
        _fresh(fs, path)
    return True


def remove_file(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    _fresh(fs, path)


def remove_tree(fs: fsspec.AbstractFileSystem, directory: str) -> None:
    _fresh(fs, directory)
    try:
        fs.rm(directory, recursive=True)
    except FileNotFoundError:
        pass
    _fresh(fs, directory)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    proto = fs.protocol
    protos = proto if isinstance(proto, (tuple, list)) else (proto,)
    return "file" in protos or "local" in protos
