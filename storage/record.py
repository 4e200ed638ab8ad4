"""Release records and the per-model index.

Release record: <registry>/<model>/.releases/<version>.json, written by the
owner of the version after every file (saved_model.pb|cpb last) is in place.
It lives outside the numeric version directory so TensorFlow Serving sees
nothing but the SavedModel there. Schema "tf-bigexport.release/2" (records of schema /1 still read: they
lack the three loadability fields, and loadable_by_stock_tensorflow is
derived from their file list):

  schema             "tf-bigexport.release/2"
  model_name, version, uri (display URI of the version dir, no credentials)
  job_key            the job that claimed and committed the version
  fingerprint        from release_info (e.g. fingerprint.pb values as a dict)
  signatures         from release_info (signature keys / specs)
  tensorflow_version from release_info
  job_spec_sha256    from release_info
  loadable_by_stock_tensorflow  from release_info: true for a plain saved_model.pb
  loading            from release_info: {form, reason, program_file, program_bytes, ...}
                     (imageformat.loadability); form "servable" or "image"
  converted_from     from release_info (`convert`): the version this one was converted from
  files              [{path, size, crc32c (base64 BE), sha256 (hex)}], sorted by path
  total_bytes        sum of sizes
  created            when the version was claimed (ISO-8601 UTC)
  committed          when the record was written (ISO-8601 UTC)
  extra              any other release_info keys (JSON values)

Index: <registry>/<model>/index.json, schema "tf-bigexport.index/1":
{schema, model_name, latest, versions: [{version, committed, fingerprint,
job_key, loadable_by_stock_tensorflow, loading (the record's loading.reason),
record}]}. It is derived from the release records and rebuilt by
every commit; with concurrent publishers the last writer wins, and each
writer re-reads the records after writing so a lost update is repaired.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import StorageError
from .manifest import FileEntry, Manifest
from .objects import Store, dump_json, load_json_object
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB, SAVED_MODEL_PB

log = logging.getLogger("storage")
RECORD_SCHEMA = "tf-bigexport.release/2"
# Schemas from_dict reads: /1 lacks the loadability fields.
READABLE_RECORD_SCHEMAS = ("tf-bigexport.release/1", RECORD_SCHEMA)
INDEX_SCHEMA = "tf-bigexport.index/1"
RELEASES_DIR = ".releases"
INDEX_NAME = "index.json"
RELEASE_INFO_FIELDS = ("fingerprint", "signatures", "tensorflow_version", "job_spec_sha256",
                       "loadable_by_stock_tensorflow", "loading", "converted_from")
_PROGRAM_FILES = {SAVED_MODEL_PB: True, SAVED_MODEL_CPB: False}  # stock TensorFlow reads .pb only


def loadable_by_stock_tensorflow(data: dict) -> bool | None:
    """A record's loadable_by_stock_tensorflow; for a /1 record, from its program file
    (a plain saved_model.pb loads, saved_model.cpb needs an image-format loader)."""
    if data.get("loadable_by_stock_tensorflow") is not None:
        return bool(data["loadable_by_stock_tensorflow"])
    found = {_PROGRAM_FILES[f["path"]] for f in data.get("files") or []
             if isinstance(f, dict) and f.get("path") in _PROGRAM_FILES}
    return (True in found) if found else None  # TensorFlow prefers the .pb when both exist


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class ReleaseRecord:
    model_name: str
    version: int
    uri: str
    job_key: str
    files: list[FileEntry]
    fingerprint: Any = None
    signatures: Any = None
    tensorflow_version: str | None = None
    job_spec_sha256: str | None = None
    loadable_by_stock_tensorflow: bool | None = None
    loading: dict | None = None
    converted_from: dict | None = None
    created: str = ""
    committed: str = ""
    extra: dict = field(default_factory=dict)
    schema: str = RECORD_SCHEMA

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def manifest(self) -> Manifest:
        return Manifest(files=list(self.files))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["files"] = [asdict(f) for f in sorted(self.files, key=lambda f: f.path)]
        data["total_bytes"] = self.total_bytes
        return data

    def to_json(self) -> str:
        return dump_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "release record") -> "ReleaseRecord":
        if data.get("schema") not in READABLE_RECORD_SCHEMAS:
            raise StorageError(f"{where}: schema is {data.get('schema')!r}, expected one of "
                               f"{', '.join(map(repr, READABLE_RECORD_SCHEMAS))}")
        try:
            known = {k: data.get(k) for k in RELEASE_INFO_FIELDS}
            known["loadable_by_stock_tensorflow"] = loadable_by_stock_tensorflow(data)
            return cls(
                model_name=data["model_name"], version=int(data["version"]), uri=data["uri"],
                job_key=data["job_key"], files=[FileEntry.from_dict(f) for f in data["files"]],
                created=data.get("created", ""), committed=data.get("committed", ""),
                extra=dict(data.get("extra") or {}), schema=data["schema"], **known,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{where}: malformed field: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str = "release record") -> "ReleaseRecord":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StorageError(f"{where}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise StorageError(f"{where}: expected a JSON object")
        return cls.from_dict(data, where=where)

    @classmethod
    def build(cls, *, model_name: str, version: int, uri: str, job_key: str,
              manifest: Manifest, release_info: dict, created: str) -> "ReleaseRecord":
        info = dict(release_info or {})
        known = {k: info.pop(k, None) for k in RELEASE_INFO_FIELDS}
        files = sorted(manifest.files, key=lambda f: f.path)
        known["loadable_by_stock_tensorflow"] = loadable_by_stock_tensorflow(
            {**known, "files": [asdict(f) for f in files]})
        try:
            json.dumps(info)
            json.dumps(known)
        except TypeError as exc:
            raise StorageError(f"release_info for {model_name} v{version} is not JSON-serializable: {exc}") from exc
        return cls(model_name=model_name, version=version, uri=uri, job_key=job_key,
                   files=files, created=created,
                   committed=utc_now(), extra=info, **known)


class ReleaseStore:
    """Reads and writes release records and the index of one registry."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record_path(self, model: str, version: int) -> str:
        return self._store.join(model, RELEASES_DIR, f"{version}.json")

    def index_path(self, model: str) -> str:
        return self._store.join(model, INDEX_NAME)

    def read(self, model: str, version: int) -> ReleaseRecord | None:
        path = self.record_path(model, version)
        data = self._store.read_bytes(path)
        if data is None:
            return None
        return ReleaseRecord.from_json(data, where=self._store.uri_of(path))

    def write(self, record: ReleaseRecord) -> None:
        self._store.write_bytes(self.record_path(record.model_name, record.version), dump_json(record.to_dict()))

    def versions(self, model: str) -> list[int]:
        names = self._store.list_names(self._store.join(model, RELEASES_DIR))
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def _build_index(self, model: str) -> dict:
        paths = {self.record_path(model, v): v for v in self.versions(model)}
        rows = []
        for path, raw in self._store.read_many(list(paths)).items():
            where = self._store.uri_of(path)
            try:
                record = ReleaseRecord.from_json(raw, where=where)
                if (record.model_name, record.version) != (model, paths[path]):
                    raise StorageError(f"{where}: names {record.model_name!r} version {record.version}")
            except StorageError as exc:  # one damaged record must not stop publishing
                log.warning("%s; skipped: the index lists only readable records", exc)
                continue
            rows.append({"version": record.version, "committed": record.committed,
                         "fingerprint": record.fingerprint, "job_key": record.job_key,
                         "loadable_by_stock_tensorflow": record.loadable_by_stock_tensorflow,
                         "loading": (record.loading or {}).get("reason"),
                         "record": f"{RELEASES_DIR}/{record.version}.json"})
        rows.sort(key=lambda r: r["version"])
        return {"schema": INDEX_SCHEMA, "model_name": model,
                "latest": rows[-1]["version"] if rows else None, "versions": rows}

    def update_index(self, model: str, rounds: int = 4) -> dict:
        """Rewrite index.json from the records until a re-read matches a fresh rebuild.

        A concurrent publisher may overwrite it with an older view; the re-read
        after our write catches that and writes again.
        """
        fresh = self._build_index(model)
        for _ in range(rounds):
            if self.read_index(model) == fresh:
                break
            self._store.write_bytes(self.index_path(model), dump_json(fresh))
            fresh = self._build_index(model)
        return fresh

    def read_index(self, model: str) -> dict | None:
        """index.json, or None if absent or damaged (it is derived data: the next update rebuilds it)."""
        data = self._store.read_bytes(self.index_path(model))
        if data is None:
            return None
        index = load_json_object(data)
        if index is None:
            log.warning("%s: damaged (not a JSON object); it is rebuilt from the release records",
                        self._store.uri_of(self.index_path(model)))
            return None
        return index
