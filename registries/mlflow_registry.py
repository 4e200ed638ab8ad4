"""MLflow Model Registry adapter: one MLflow model version per published version.

The registered model is named like the model; the MLflow version's source is
the published version directory and its tags carry the release record's
identity (URI, version, fingerprint), which is what makes registering
idempotent: a published version whose URI is already tagged on an MLflow
version is not registered again. MLflow numbers its versions itself; the
`tf_bigexport.version` tag holds ours.

Needs the `mlflow` extra (mlflow-skinny + SQLAlchemy for sqlite:// stores).
"""
from __future__ import annotations

import logging
from typing import Any

from tf_bigexport.registries.adapter import ALREADY_REGISTERED, REGISTERED, RegistrationResult

TAG_PREFIX = "tf_bigexport."
URI_TAG = TAG_PREFIX + "uri"
VERSION_TAG = TAG_PREFIX + "version"
SINGLEPRINT_TAG = TAG_PREFIX + "singleprint"
CHECKSUM_TAG = TAG_PREFIX + "saved_model_checksum"


def record_tags(record: Any, registry_uri: str) -> dict[str, str]:
    """The MLflow model version tags for a release record (all strings, as MLflow stores them)."""
    fingerprint = record.fingerprint or {}
    tags = {
        URI_TAG: record.uri,
        VERSION_TAG: str(record.version),
        SINGLEPRINT_TAG: str(fingerprint.get("singleprint", "")),
        CHECKSUM_TAG: str(fingerprint.get("saved_model_checksum", "")),
        TAG_PREFIX + "release_record": f"{registry_uri}/{record.model_name}/.releases/{record.version}.json",
        TAG_PREFIX + "tensorflow_version": str(record.tensorflow_version or ""),
        TAG_PREFIX + "job_spec_sha256": str(record.job_spec_sha256 or ""),
        TAG_PREFIX + "signatures": ",".join(sorted(record.signatures or {})),
        TAG_PREFIX + "total_bytes": str(record.total_bytes),
    }
    for key, value in sorted(((record.extra or {}).get("tags") or {}).items()):
        tags[f"{TAG_PREFIX}tag.{key}"] = str(value)
    return tags


class MlflowAdapter:
    name = "mlflow"

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client = None

    def client(self):
        if self._client is None:
            try:
                from mlflow import MlflowClient
            except ImportError:
                raise RuntimeError("MLflow registration needs the mlflow extra: "
                                   "pip install 'tf-bigexport[mlflow]'") from None
            # MLflow logs its database migrations at INFO; keep them out of quiet runs.
            if logging.getLogger().getEffectiveLevel() > logging.INFO:
                for noisy in ("mlflow", "alembic"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def versions_for(self, name: str, uri: str) -> list[Any]:
        """MLflow versions of `name` whose URI tag is `uri`, oldest first."""
        client = self.client()
        found, token = [], None
        while True:
            page = client.search_model_versions(f"name='{name}'", max_results=1000, page_token=token)
            found += [v for v in page if v.tags.get(URI_TAG) == uri]
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda v: int(v.version))

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException
        client = self.client()
        try:
            client.get_registered_model(name)
        except MlflowException as e:
            if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                client.create_registered_model(name, description="Published by tf-bigexport")
            except MlflowException as race:  # created by a concurrent registerer meanwhile
                if getattr(race, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _check_same_export(self, existing: Any, record: Any) -> None:
        expected = str((record.fingerprint or {}).get("saved_model_checksum", ""))
        recorded = existing.tags.get(CHECKSUM_TAG)
        if recorded != expected:
            raise RuntimeError(f"MLflow model {record.model_name!r} version {existing.version} is tagged with "
                               f"{record.uri} but fingerprint saved_model_checksum {recorded}, not {expected}; "
                               "refusing to register a second, different export under the same URI")

    def register(self, record: Any) -> RegistrationResult:
        name = record.model_name
        registry_uri = record.uri.rsplit("/", 2)[0]
        existing = self.versions_for(name, record.uri)
        if existing:
            self._check_same_export(existing[0], record)
            return RegistrationResult(self.name, ALREADY_REGISTERED, f"models:/{name}/{existing[0].version}")
        self._ensure_registered_model(name)
        created = self.client().create_model_version(
            name, source=record.uri, tags=record_tags(record, registry_uri),
            description=f"tf-bigexport release {record.uri} (version {record.version})")
        # Two registerers racing past the check above both create one; the oldest wins, ours goes.
        winner = self.versions_for(name, record.uri)[0]
        if str(winner.version) != str(created.version):
            self.client().delete_model_version(name, created.version)
            return RegistrationResult(self.name, ALREADY_REGISTERED, f"models:/{name}/{winner.version}")
        return RegistrationResult(self.name, REGISTERED, f"models:/{name}/{created.version}")
