"""Checks before any model is built: what would otherwise fail only after
tracing, saving and uploading, and jobs a rerun has nothing left to do for.

For every job (the jobs file itself was validated already):
- its job key (model name + run id) is a valid object-key name;
- its registry opens, answers, and takes a write (a probe object, removed);
- an explicit version is free, or held by this very job; if not, the
  message says exactly what holds it (a published version and its release
  record, or the job whose claim is not committed, ...);
- its factory's package can be found (local runners only: on Dataflow the
  factories live in the worker image), without importing it; or its
  saved_model holds a saved_model.pb|cpb where the workers can read it;
- if this job key (same --run_id) already published its version, the job is
  done: it is reported from its release record and does no work.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Sequence

from tf_bigexport.pipeline.jobs import JobSpec
from tf_bigexport.pipeline.options import ResolvedRun, is_dataflow

log = logging.getLogger("tf_bigexport")


class PreflightError(ValueError):
    """``problems``: one line per problem, each naming the job."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclasses.dataclass
class Preflight:
    to_run: list[JobSpec]
    done: list[dict[str, Any]]  # outcomes of jobs this run id had already published


def preflight(jobs: Sequence[JobSpec], run: ResolvedRun) -> Preflight:
    """Raises PreflightError listing every problem; else the jobs left to run and those already done."""
    from tf_bigexport import storage
    from tf_bigexport.storage.names import validate_job_key
    from tf_bigexport.transforms.factories import locate

    problems: list[str] = []
    registries: dict[str, Any] = {}
    writable: dict[str, str | None] = {}  # registry uri -> problem
    to_run, done = [], []
    for job in jobs:
        where = f"preflight: job {job.name!r}"
        job_key = f"{job.name}.{run.run_id}"
        try:
            validate_job_key(job_key)
        except storage.StorageError as e:
            problems.append(f"{where}: {e}")
            continue
        if job.saved_model:
            missing = _saved_model_problem(job.saved_model, job.registry, run)
            if missing:
                problems.append(f"{where}: field 'saved_model': {missing}")
        elif not is_dataflow(run.runner):
            first = [d for d in (job.base_dir, *run.python_path) if d]
            missing = locate(job.factory, first, run.launch_dir)
            if missing:
                problems.append(f"{where}: field 'factory': {missing}")
        try:
            registry = registries.get(job.registry) or storage.Registry(job.registry,
                                                                        storage_options=run.storage_options)
            registries[job.registry] = registry
            if job.registry not in writable:
                writable[job.registry] = _write_problem(registry)
            if writable[job.registry]:
                problems.append(f"{where}: registry {registry.uri}: {writable[job.registry]}")
                continue
            mine = registry.state_of_job(job.name, job_key)
            if mine is not None and mine.state == "published":
                done.append(_already_published(mine.record, registry, run))
                continue
            if job.version.isdigit():
                held = _held_by_another(registry, job, job_key)
                if held:
                    problems.append(f"{where} field 'version': {held}")
                    continue
        except storage.StorageError as e:
            problems.append(f"{where}: registry {job.registry}: {e}")
            continue
        to_run.append(job)
    if problems:
        raise PreflightError(problems)
    for outcome in done:
        log.info("job=%s already published version %s by this run id (%s); nothing to do",
                 outcome["model_name"], outcome["version"], run.run_id)
    return Preflight(to_run=to_run, done=done)


def _saved_model_problem(source: str, registry: str, run: ResolvedRun) -> str | None:
    """Why `source` cannot be the SavedModel a job publishes, or None; one stat per program file name."""
    from tf_bigexport import storage
    from tf_bigexport.savedmodel_files import PROGRAM_FILES
    local = storage.local_path(source)
    if local is not None and is_dataflow(run.runner):
        return f"{source}: a local path, which Dataflow's workers cannot read; use a gs:// URI"
    if local is not None and not os.path.isdir(local):
        return f"{source}: no such directory"
    try:
        store = storage.open_store(source, storage.options_for(source, registry, run.storage_options))
        if any(store.info(store.join(name)) is not None for name in PROGRAM_FILES):
            return None
    except storage.StorageError as e:
        return str(e)
    return f"{storage.display_uri(source)}: no {' or '.join(PROGRAM_FILES)} there: not a SavedModel directory"


def _write_problem(registry) -> str | None:
    from tf_bigexport import storage
    try:
        registry.check_writable()
    except storage.StorageError as e:
        return f"not reachable or not writable: {e}"
    return None


def _held_by_another(registry, job: JobSpec, job_key: str) -> str | None:
    """Why the job's explicit version is taken, naming what holds it; None if it is free or ours."""
    version = int(job.version)
    state = registry.release_state(job.name, version)
    if state.state == "free" or state.held_by(job_key):
        return None
    base = f"version {version} of {job.name!r} is taken"
    if state.state == "published":
        record = f"{registry.uri}/{job.name}/.releases/{version}.json"
        return f"{base}: published by job {state.job_key!r} (release record {record}); use another version or 'next'"
    if state.state == "claimed":
        return f"{base}: claimed by job {state.job_key!r}, which has not committed it (still running, or killed)"
    return f"{base}: {state.detail or state.state}"


def _already_published(record, registry, run: ResolvedRun) -> dict[str, Any]:
    """The outcome of a job whose version this run id published before (registration retried)."""
    from tf_bigexport.pipeline.graph import shown_registration
    from tf_bigexport.savedmodel_files import PROGRAM_FILES
    from tf_bigexport.transforms.commit import register
    markers = [f.path for f in record.files if f.path in PROGRAM_FILES]
    return {
        "model_name": record.model_name,
        "status": "published",
        "version": record.version,
        "uri": record.uri,
        "size": record.total_bytes,
        "files": len(record.files),
        "proto_file": markers[0] if markers else None,
        "chunks": None,
        "shards": None,
        "fingerprint": dict(record.fingerprint or {}),
        "seconds": {},
        "registrations": [dict(r) for r in register(record, registry, run.registration)],
        "registration": shown_registration(run.registration),
        "resumed": True,
    }
