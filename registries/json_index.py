"""The plain JSON index in the bucket: <registry>/<model>/index.json (always on).

The storage layer writes the index as part of every commit; this adapter
only confirms the version is listed with the record's fingerprint and, if a
crash came between the release record and the index, rebuilds it through
storage.Registry.update_index. No second index format exists.
"""
from __future__ import annotations

from typing import Any

from tf_bigexport.registries.adapter import ALREADY_REGISTERED, REGISTERED, RegistrationResult


class JsonIndexAdapter:
    name = "index"

    def __init__(self, registry: Any) -> None:
        """`registry`: the storage.Registry the version was published to."""
        self._registry = registry

    def _listed(self, index: dict | None, record: Any) -> bool:
        rows = (index or {}).get("versions") or []
        return any(row.get("version") == record.version and row.get("fingerprint") == record.fingerprint
                   for row in rows)

    def register(self, record: Any) -> RegistrationResult:
        reference = f"{self._registry.uri}/{record.model_name}/index.json"
        if self._listed(self._registry.read_index(record.model_name), record):
            return RegistrationResult(self.name, ALREADY_REGISTERED, reference)
        index = self._registry.update_index(record.model_name)
        if not self._listed(index, record):
            raise RuntimeError(f"{reference}: version {record.version} is still not listed after a rebuild "
                               "(is its release record readable?)")
        return RegistrationResult(self.name, REGISTERED, reference)
