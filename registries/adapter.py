"""The one interface every model registry adapter implements, and running them all.

The release record (storage.ReleaseRecord) is the integration point: an
adapter gets the record of a version that is already published and makes the
registry know about it. Registering is idempotent: a version an adapter has
already registered is reported as "already-registered", never added twice.
A failing adapter never unpublishes anything; its failure is reported and the
`register` command retries it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Protocol, runtime_checkable

REGISTERED = "registered"
ALREADY_REGISTERED = "already-registered"
FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class RegistrationResult:
    registry: str  # adapter name, e.g. "index" or "mlflow"
    status: str  # REGISTERED | ALREADY_REGISTERED | FAILED
    reference: str | None = None  # where it is registered, e.g. "models:/resnet/3"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != FAILED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RegistrationResult":
        return cls(registry=data["registry"], status=data["status"], reference=data.get("reference"),
                   error=data.get("error"))

    def describe(self) -> str:
        if self.ok:
            where = f" as {self.reference}" if self.reference else ""
            return f"{self.registry}: {self.status}{where}"
        return f"{self.registry}: FAILED: {self.error}"


@runtime_checkable
class ModelRegistryAdapter(Protocol):
    name: str

    def register(self, record: Any) -> RegistrationResult:
        """Make the registry know the published version in `record` (a storage.ReleaseRecord); idempotent."""
        ...


def register_everywhere(record: Any, adapters: Iterable[ModelRegistryAdapter]) -> list[RegistrationResult]:
    """Runs every adapter; one adapter's exception becomes its FAILED result, the others still run."""
    results = []
    for adapter in adapters:
        try:
            results.append(adapter.register(record))
        except Exception as e:  # noqa: BLE001 - reported, retried with `register`
            results.append(RegistrationResult(adapter.name, FAILED, error=f"{type(e).__name__}: {e}"))
    return results
