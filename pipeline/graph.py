"""The Beam graph of an export run, as one composite transform.

    jobs --> ReadJobs --> TraceAndSave (own process) --> Fingerprint
         --> Stage --> Verify --> Commit --> outcomes
    (every stage also emits failures; they are flattened into the outcomes)
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import apache_beam as beam

from tf_bigexport.pipeline.jobs import JobSpec, resolve_sample_inputs
from tf_bigexport.transforms.commit import Commit
from tf_bigexport.transforms.elements import ExportState, ExportTask, InputSpec, SignatureTask, StageFailure
from tf_bigexport.transforms.fingerprint import Fingerprint
from tf_bigexport.transforms.stage import Stage
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage
from tf_bigexport.transforms.trace_and_save import TraceAndSave
from tf_bigexport.transforms.verify import Verify


def to_task(job: JobSpec, *, work_root: str, run_id: str, storage_options: dict | None = None,
            registration: dict | None = None, python_path: Sequence[str] = (),
            launch_dir: str | None = None) -> ExportTask:
    """The stages' view of a job: sample arrays, a run-stable job key, where its factory is imported from."""
    first = tuple(dict.fromkeys([*([job.base_dir] if job.base_dir else []), *python_path]))
    return ExportTask(
        model_name=job.name,
        job_key=f"{job.name}.{run_id}",
        factory=job.factory,
        saved_model=job.saved_model,
        factory_kwargs=dict(job.factory_kwargs),
        checkpoint=job.checkpoint,
        signatures=tuple(SignatureTask(key=s.key, method=s.method,
                                       inputs=tuple(InputSpec(i.name, i.dtype, i.shape) for i in s.inputs),
                                       inputs_as=s.inputs_as)
                         for s in job.signatures),
        sample_inputs={key: resolve_sample_inputs(job, key) for key in job.sample_inputs},
        split_threshold=job.split_threshold,
        max_shard_size=job.max_shard_size,
        format=job.format,
        version_policy=job.version,
        registry=job.registry,
        work_dir=os.path.join(work_root, job.name),
        storage_options=dict(storage_options or {}),
        release_extras={"job_spec_sha256": job.spec_sha256, "job_spec": dict(job.raw), "tags": dict(job.tags)},
        registration=dict(registration or {}),
        python_path=first,
        launch_dir=launch_dir,
        trace_timeout=job.trace_timeout,
        serving_warmup=job.serving_warmup,
    )


class _ReadJob(StageDoFn):
    stage = "read"

    def __init__(self, task_settings: dict[str, Any]) -> None:
        super().__init__()
        self._settings = task_settings

    def model_name(self, job: JobSpec) -> str:
        return job.name

    def run(self, job: JobSpec) -> Iterable[ExportTask]:
        yield to_task(job, **self._settings)


class ReadJobs(beam.PTransform):
    """Validated job specs -> ExportTasks, spread so that jobs can run in parallel.

    ``task_settings`` are to_task's keyword arguments (work_root, run_id, ...).
    """

    def __init__(self, jobs: Sequence[JobSpec], **task_settings: Any) -> None:
        super().__init__()
        self._jobs = list(jobs)
        self._settings = task_settings

    def expand(self, pbegin):
        jobs = pbegin | "JobSpecs" >> beam.Create(self._jobs) | "SpreadJobs" >> beam.Reshuffle()
        return apply_stage(jobs, "ToExportTask", _ReadJob(self._settings))


class ExportModels(beam.PTransform):
    """Job specs in, per-job outcomes out (published ExportStates, StageFailures)."""

    def __init__(self, jobs: Sequence[JobSpec], **task_settings: Any) -> None:
        super().__init__()
        self._read_jobs = ReadJobs(jobs, **task_settings)

    def expand(self, pbegin):
        tasks, read_failed = pbegin | "ReadJobs" >> self._read_jobs
        saved, save_failed = tasks | "TraceAndSave" >> TraceAndSave()
        fingerprinted, fingerprint_failed = saved | "Fingerprint" >> Fingerprint()
        staged, stage_failed = fingerprinted | "Stage" >> Stage()
        verified, verify_failed = staged | "Verify" >> Verify()
        published, commit_failed = verified | "Commit" >> Commit()
        failures = ((read_failed, save_failed, fingerprint_failed, stage_failed, verify_failed, commit_failed)
                    | "AllFailures" >> beam.Flatten())
        return published, failures


# ---- outcomes -------------------------------------------------------------------

def shown_registration(registration) -> dict[str, Any]:
    import dataclasses

    from tf_bigexport.registries import RegistrationConfig
    shown = RegistrationConfig(**registration).without_credentials()
    return {k: v for k, v in dataclasses.asdict(shown).items() if v}


def outcome_of(element: ExportState | StageFailure) -> dict[str, Any]:
    """One job's result as a JSON-able dict (what the summary table reads)."""
    if isinstance(element, StageFailure):
        return {"model_name": element.model_name, "status": "failed", "stage": element.stage,
                "error": element.error}
    record = element.release_record or {}
    return {
        "model_name": element.task.model_name,
        "status": "published",
        "version": element.version,
        "uri": record.get("uri"),
        "size": sum(f.size for f in element.manifest.files),
        "files": len(element.manifest.files),
        "proto_file": element.proto_file,
        **dict(element.loading),
        "chunks": element.chunks,
        "shards": element.shards,
        "fingerprint": dict(element.fingerprint),
        "seconds": dict(element.seconds),
        "registrations": [dict(r) for r in element.registrations],
        "registration": shown_registration(element.task.registration),
    }


class _WriteOutcome(beam.DoFn):
    """One JSON object per job, written whole (an object write, or a local temp file renamed)."""

    def __init__(self, outcomes_dir: str, attempt: str) -> None:
        super().__init__()
        self._dir = outcomes_dir
        self._attempt = attempt

    def process(self, outcome: dict[str, Any]):
        from tf_bigexport import storage
        store = storage.open_store(self._dir)
        data = json.dumps({**outcome, "attempt": self._attempt}, indent=2, sort_keys=True, default=str)
        store.write_bytes(store.join(f"{outcome['model_name']}.json"), data.encode("utf-8"))
        yield outcome["model_name"]


class WriteOutcomes(beam.PTransform):
    """(published, failures) -> one JSON file per job under outcomes_dir, tagged with ``attempt``."""

    def __init__(self, outcomes_dir: str, attempt: str = "") -> None:
        super().__init__()
        self._dir = outcomes_dir
        self._attempt = attempt

    def expand(self, results):
        published, failures = results
        return ((published, failures)
                | "AllOutcomes" >> beam.Flatten()
                | "ToJson" >> beam.Map(outcome_of)
                | "WriteOutcomeFiles" >> beam.ParDo(_WriteOutcome(self._dir, self._attempt)))


def build_graph(pipeline: beam.Pipeline, jobs: Sequence[JobSpec], *, outcomes_dir: str, attempt: str = "",
                **task_settings: Any) -> None:
    """Applies the whole export to ``pipeline`` (does not run it); ``task_settings`` as for to_task."""
    _ = (pipeline
         | "ExportModels" >> ExportModels(jobs, **task_settings)
         | "WriteOutcomes" >> WriteOutcomes(outcomes_dir, attempt))
