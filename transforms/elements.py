"""What travels between the stages: URIs and small metadata, never model bytes."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import numpy as np

# Float outputs of the reloaded model must match the golden outputs within this
# tolerance (numpy.allclose semantics); integer, bool and string outputs must be equal.
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6
# Building, tracing and computing golden outputs must end within this many
# seconds unless the job sets its own trace_timeout (docs/jobs.md).
DEFAULT_TRACE_TIMEOUT = 3600.0
# The method name of a signature the model already has (a loaded SavedModel's .signatures[key]).
SAVED_SIGNATURE = "signatures"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # TensorFlow dtype name, e.g. "float32", "string"
    shape: tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class SignatureTask:
    key: str
    method: str  # the model method traced for this signature
    inputs: tuple[InputSpec, ...]
    inputs_as: str = "auto"  # "positional" | "list" | "dict", or "auto": as the model takes them (trace.py)


@dataclasses.dataclass(frozen=True, eq=False)
class ExportTask:
    """One model to export, as the stages need it (built from a job spec)."""
    model_name: str
    job_key: str  # stable for the whole run: Beam retries reuse claims and staging
    factory: str | None  # "package.module:function"; None when saved_model is set
    signatures: tuple[SignatureTask, ...]
    registry: str
    work_dir: str  # local scratch directory for this job
    version_policy: str = "next"  # "next" | "timestamp" | digits
    split_threshold: int = 1 << 30
    max_shard_size: int = 1 << 30
    format: str = "auto"  # "auto" | "servable" | "image" (pipeline/jobs.py FORMATS)
    factory_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    # signature key -> input name -> array (small by contract)
    sample_inputs: Mapping[str, Mapping[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    # fsspec options for the registry (endpoint, credentials); prefer ambient credentials.
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Goes into the release record as is (tags, job spec and its hash).
    release_extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # registries.RegistrationConfig fields (e.g. mlflow_tracking_uri); the JSON index is always on.
    registration: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Where the factory is imported from: these first (the jobs file's directory, --python_path),
    # then the installed packages, then launch_dir (the directory the run started in).
    python_path: tuple[str, ...] = ()
    launch_dir: str | None = None
    trace_timeout: float = DEFAULT_TRACE_TIMEOUT
    # The sample inputs as TensorFlow Serving's warmup requests in assets.extra/ (save.py).
    serving_warmup: bool = False
    # An existing SavedModel (local path or URI) loaded instead of calling the factory (trace.py).
    saved_model: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class ExportState:
    """A task plus what the stages so far found out about it."""
    task: ExportTask
    signatures: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # key -> inputs/outputs summary
    golden_npz: bytes = b""  # golden outputs, "<signature>/<output>" -> array, as .npz bytes
    saved_dir: str | None = None
    proto_file: str | None = None  # "saved_model.pb" or "saved_model.cpb"
    # imageformat.loadability.Loadability.to_dict(): what can load the saved model, and why
    loading: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    saved_bytes: int = 0
    chunks: int = 0
    shards: int = 0
    fingerprint: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    manifest: Any = None  # tf_bigexport.storage.Manifest
    staging_uri: str | None = None
    version: int | None = None
    release_record: Mapping[str, Any] | None = None
    registrations: tuple[Mapping[str, Any], ...] = ()  # tf_bigexport.registries.RegistrationResult dicts
    seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)  # stage -> wall time
    tensorflow_version: str | None = None  # of the process that saved the model
    # A rerun's save taken over from an earlier attempt: "saved", or "verified" if it also passed the reload check.
    reused: str | None = None

    def registry(self) -> Any:
        return open_registry(self.task)

    def publication(self, registry: Any = None) -> Any:
        """This job's storage.Publication (`registry`: an open one, e.g. a DoFn's from setup)."""
        registry = registry or self.registry()
        return registry.publication(self.task.model_name, self.task.job_key, self.manifest)

    def advance(self, stage: str, seconds: float, **changes: Any) -> "ExportState":
        timings = dict(self.seconds)
        timings[stage] = timings.get(stage, 0.0) + seconds
        return dataclasses.replace(self, seconds=timings, **changes)


def open_registry(task: ExportTask) -> Any:
    from tf_bigexport import storage
    return storage.Registry(task.registry, storage_options=dict(task.storage_options))


class Registries:
    """The storage.Registry of each registry a DoFn meets, opened once: a DoFn builds this in
    `setup`, so elements do not each open a filesystem."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Any] = {}

    def of(self, task: ExportTask) -> Any:
        key = (task.registry, json.dumps(dict(task.storage_options), sort_keys=True, default=str))
        if key not in self._open:
            self._open[key] = open_registry(task)
        return self._open[key]


@dataclasses.dataclass(frozen=True)
class StageFailure:
    """A job that stopped at ``stage``; nothing of it was published."""
    model_name: str
    stage: str
    error: str

    def __str__(self) -> str:
        return f"job {self.model_name!r} failed in stage {self.stage!r}: {self.error}"
