"""Running an export: options + graph + run + outcomes (the `run` and `demo` commands use this)."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from typing import Any, Sequence

from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport.pipeline.jobs import JobSpec
from tf_bigexport.pipeline.logs import WORKER_OUTPUT, progress, worker_output_to
from tf_bigexport.pipeline.options import ResolvedRun, RunOptions, build_options, parse_run_options
from tf_bigexport.pipeline.summary import read_outcomes
from tf_bigexport.storage.uris import is_uri


def construct(jobs: Sequence[JobSpec], run: RunOptions | Sequence[str] | ResolvedRun = RunOptions(),
              options: Any = None, attempt: str = "") -> tuple[Any, ResolvedRun]:
    """A pipeline with the export graph applied, not yet run (also how Dataflow construction is tested).

    ``run`` is RunOptions, or `run`-style arguments such as ["--work_dir", "w", "--runner", "DirectRunner"],
    or an already resolved run with its Beam ``options``. ``attempt`` tags this attempt's outcomes.
    """
    import apache_beam as beam

    from tf_bigexport.pipeline.graph import build_graph
    if not isinstance(run, ResolvedRun):
        options, run = build_options(run if isinstance(run, RunOptions) else parse_run_options(run))
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, jobs, outcomes_dir=run.outcomes_dir, attempt=attempt, **run.task_settings())
    return pipeline, run


def stage_counters(result) -> dict[str, int]:
    """The stages' Beam counters (bytes written, chunks, shards, files published, ...)."""
    from apache_beam.metrics.metric import MetricsFilter

    from tf_bigexport.transforms.stage_dofn import METRICS_NAMESPACE
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    except (NotImplementedError, KeyError):  # not every runner reports metrics
        return {}
    totals: dict[str, int] = {}
    for counter in counters:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (counter.committed or 0)
    return dict(sorted(totals.items()))


def run_export(jobs: Sequence[JobSpec], run: RunOptions | Sequence[str] = RunOptions(),
               counters: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Checks (preflight), then runs the export to completion; returns one outcome per job.

    Raises PreflightError before any work if a job cannot succeed (registry not
    writable, explicit version taken, factory not found). Jobs this run id
    published before are reported from their release records without work.
    ``counters``, if given, receives the stages' Beam counters.
    """
    from tf_bigexport.pipeline.preflight import preflight

    options, resolved = build_options(run if isinstance(run, RunOptions) else parse_run_options(run))
    checked = preflight(jobs, resolved)
    outcomes = list(checked.done)
    if checked.to_run:
        outcomes += _run_pipeline(checked.to_run, resolved, options, counters)
    if not resolved.work_dir_given and not is_uri(resolved.work_dir):
        _tidy_work_dir(resolved, outcomes)
    return sorted(outcomes, key=lambda o: o["model_name"])


def _run_pipeline(jobs: Sequence[JobSpec], run: ResolvedRun, options: Any,
                  counters: dict[str, int] | None) -> list[dict[str, Any]]:
    attempt = uuid.uuid4().hex[:12]  # outcomes of an earlier attempt of this run id may sit in the same dir
    pipeline, _ = construct(jobs, run, options, attempt=attempt)
    start = time.monotonic()
    progress("export started", jobs=len(jobs), run_id=run.run_id, work_dir=run.work_dir)
    worker_output = _local_worker_output(run, options)
    with worker_output_to(worker_output) if worker_output else contextlib.nullcontext():
        result = pipeline.run()
        result.wait_until_finish()
    totals = stage_counters(result)
    if counters is not None:
        counters.update(totals)
    names = {j.name for j in jobs}
    outcomes = [o for o in read_outcomes(run.outcomes_dir) if o.get("attempt") == attempt and o["model_name"] in names]
    progress("export finished", seconds=f"{time.monotonic() - start:.1f}",
             published=sum(o["status"] == "published" for o in outcomes),
             failed=sum(o["status"] != "published" for o in outcomes), **totals)
    # A job with no outcome at all would be a bug in the graph; report it rather than pass silently.
    seen = {o["model_name"] for o in outcomes}
    outcomes += [{"model_name": j.name, "status": "failed", "stage": "unknown",
                  "error": "the pipeline produced no outcome for this job"} for j in jobs if j.name not in seen]
    if worker_output:
        _settle_worker_output(worker_output, outcomes)
    return outcomes


def _settle_worker_output(path: str, outcomes: list[dict[str, Any]]) -> None:
    """An empty file goes; one beside a failed job is named. There is none with --verbose."""
    if not os.path.exists(path):
        return
    if not os.path.getsize(path):
        os.remove(path)
    elif any(o["status"] != "published" for o in outcomes):
        logging.getLogger("tf_bigexport").warning("what the worker processes wrote to stderr: %s", path)


def _local_worker_output(run: ResolvedRun, options: Any) -> str | None:
    """Where DirectRunner's multi_processing workers write their stderr (logs.worker_output_to), else None."""
    from apache_beam.options.pipeline_options import DirectOptions
    if run.runner.lower().removesuffix("runner") != "direct" or is_uri(run.work_dir) \
            or options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        return None
    os.makedirs(run.work_dir, exist_ok=True)
    return os.path.join(run.work_dir, WORKER_OUTPUT)


def _tidy_work_dir(run: ResolvedRun, outcomes: list[dict[str, Any]]) -> None:
    """Scratch we created ourselves: gone once every job published; else kept, so a rerun resumes."""
    if all(o["status"] == "published" for o in outcomes):
        shutil.rmtree(run.work_dir, ignore_errors=True)
    elif os.path.isdir(run.work_dir):
        logging.getLogger("tf_bigexport").warning(
            "kept %s for the jobs that did not publish: rerun with --run_id %s to resume from what they saved",
            run.work_dir, run.run_id)


def run_command(args) -> int:
    """`run --jobs FILE [--registry URI] [beam options]`: exit 1 if any job failed, 2 on a bad jobs file."""
    from tf_bigexport.pipeline.jobs import JobsFileError, load_jobs_file
    from tf_bigexport.pipeline.preflight import PreflightError
    from tf_bigexport.pipeline.summary import format_summary

    try:
        jobs = load_jobs_file(args.jobs, default_registry=args.registry)
    except JobsFileError as e:
        return fail(e, ExitCode.USAGE)
    try:
        outcomes = run_export(jobs, args.run_options)
    except PreflightError as e:
        return fail(e, ExitCode.USAGE)
    except ValueError as e:  # bad pipeline options, named by Beam or by us
        return fail(f"run: {e}", ExitCode.USAGE)
    print(format_summary(outcomes))
    if not all(o["status"] == "published" for o in outcomes):
        return ExitCode.FAILED
    from tf_bigexport.pipeline.summary import registration_failures
    return ExitCode.NOT_REGISTERED if registration_failures(outcomes) else ExitCode.OK
