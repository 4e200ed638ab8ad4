"""Which registries a run registers in, as plain data that Beam can carry to workers."""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from tf_bigexport.registries.adapter import ModelRegistryAdapter
from tf_bigexport.registries.json_index import JsonIndexAdapter
from tf_bigexport.storage.uris import strip_userinfo


@dataclasses.dataclass(frozen=True)
class RegistrationConfig:
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None  # default: the tracking URI

    def adapters(self, storage_registry: Any) -> list[ModelRegistryAdapter]:
        """The JSON index (always) plus MLflow when a tracking URI is set."""
        adapters: list[ModelRegistryAdapter] = [JsonIndexAdapter(storage_registry)]
        if self.mlflow_tracking_uri:
            from tf_bigexport.registries.mlflow_registry import MlflowAdapter
            adapters.append(MlflowAdapter(self.mlflow_tracking_uri, self.mlflow_registry_uri))
        return adapters

    def without_credentials(self) -> "RegistrationConfig":
        """The same URIs minus any user:password@ (safe to print and to write into outcomes)."""
        return RegistrationConfig(**{f.name: getattr(self, f.name) and strip_userinfo(getattr(self, f.name))
                                     for f in dataclasses.fields(self)})

    def cli_flags(self) -> list[str]:
        """The `register` command's flags for this configuration."""
        flags = []
        if self.mlflow_tracking_uri:
            flags += ["--mlflow_tracking_uri", self.mlflow_tracking_uri]
        if self.mlflow_registry_uri:
            flags += ["--mlflow_registry_uri", self.mlflow_registry_uri]
        return flags

    def retry_command(self, version_uri: str) -> str:
        """What to run to retry registering a published version (credentials left out)."""
        return shlex.join(["tf-bigexport", "register", version_uri, *self.without_credentials().cli_flags()])
