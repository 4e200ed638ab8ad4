"""Version directories brought onto local disk, checked against their release record.

TensorFlow loads from local files, so `call`, `convert` and the RunInference
handlers download a remote version first. A version a registry
published has a release record beside it (<registry>/<model>/.releases/<n>.json)
listing each file's size, crc32c and sha256: such a download fetches exactly
those files and compares every byte once it is local, so an object damaged or
replaced in the bucket never reaches a loader, nor a cache that would keep it.
Anything else (a staging prefix, a SavedModel another tool wrote) is fetched as
it is. A version on local disk is loaded where it is, after a check that every
file its record lists is there with its size: a stat each, nothing read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Iterator

from .errors import VerificationError
from .names import model_name_problem, parse_version
from .objects import Store, open_store
from .record import ReleaseRecord, ReleaseStore
from .uris import local_path
from .verify import check_entries

log = logging.getLogger("storage")
# Hashing is CPU-bound: more threads than cores only contend.
_CHECK_WORKERS = max(1, min(4, os.cpu_count() or 1))


def release_record_of(uri: str, storage_options: dict | None = None) -> ReleaseRecord | None:
    """The release record of the version directory `uri` (<registry>/<model>/<n>), None if it has none."""
    head, _, version_text = uri.rstrip("/").rpartition("/")
    registry_uri, _, model = head.rpartition("/")
    version = parse_version(version_text)
    if version is None or model_name_problem(model) or not registry_uri or registry_uri.endswith(":/"):
        return None
    return ReleaseStore(open_store(registry_uri, storage_options)).read(model, version)


def download_version(uri: str, destination: str, storage_options: dict | None = None) -> ReleaseRecord | None:
    """Download the directory at `uri` into the local `destination`; returns its release record, if any.

    With a record, only the files it lists are fetched, and a missing, short or
    different one raises VerificationError naming each file.
    """
    store = open_store(uri, storage_options)
    record = release_record_of(uri, storage_options)
    if record is None:
        _download(store, destination)
        return None
    # Missing files and wrong sizes (and GCS's own crc32c) are known before any byte moves.
    _check(store, record, "size", shown=store.uri)
    store.download(store.root, destination, [entry.path for entry in record.files])
    _check(open_store(destination), record, "full", shown=store.uri)
    log.debug("%s: %d files match the release record", store.uri, len(record.files))
    return record


def checked_local_version(uri: str) -> str:
    """The local directory `uri` names; when it is a version with a release record, every file
    the record lists is there with its size (a stat each: a same-size change is `verify`'s to find)."""
    local = local_path(uri)
    if local is None or not os.path.isdir(local):
        raise FileNotFoundError(f"{uri}: no such directory")
    record = release_record_of(local)
    if record is not None:
        store = open_store(local)
        _check(store, record, "size", shown=store.uri)
    return local


def _download(store: Store, destination: str, paths: list[str] | None = None) -> None:
    """Everything under `store`'s root (or just `paths`) into `destination`; nothing there is an error."""
    if not store.download(store.root, destination, paths):
        raise FileNotFoundError(f"{store.uri}: no objects under this prefix")


def _check(store: Store, record: ReleaseRecord, depth: str, *, shown: str) -> None:
    """VerificationError naming every file under `store`'s root that differs from `record` at `depth`."""
    mismatches = check_entries(store, store.root, record.files, store.find_files(store.root), depth=depth,
                               workers=1 if depth == "size" else _CHECK_WORKERS, label=f"check {shown}")
    if mismatches:
        raise VerificationError(f"{shown} (against its release record)", mismatches)


@contextlib.contextmanager
def local_directory(uri: str, storage_options: dict | None = None, paths: list[str] | None = None, *,
                    check_record: bool = True) -> Iterator[str]:
    """A local directory holding the files under `uri`: the directory itself when it is local
    (a version with a record checked by size), else a temporary download removed afterwards: of
    just `paths` when given, else of the version checked against its release record. Unless
    `check_record` is False: `verify` reports mismatches itself."""
    local = local_path(uri)
    if local is not None:
        if check_record and paths is None:
            local = checked_local_version(uri)
        elif not os.path.isdir(local):
            raise FileNotFoundError(f"{uri}: no such directory")
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="tf-bigexport-") as scratch:
        if paths is None and check_record:
            download_version(uri, scratch, storage_options)
        else:
            _download(open_store(uri, storage_options), scratch, paths)
        yield scratch
