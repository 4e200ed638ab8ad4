"""Running an export: options + graph + run + outcomes (the `run` and `demo` commands use this)."""
from __future__ import annotations

import shutil
import time
from typing import Any, Sequence

import apache_beam as beam

from tf_bigexport.pipeline import logs
from tf_bigexport.pipeline.exit_codes import ExitCode
from tf_bigexport.pipeline.graph import build_graph
from tf_bigexport.pipeline.jobs import JobSpec
from tf_bigexport.pipeline.logs import progress
from tf_bigexport.pipeline.options import ResolvedRun, RunOptions, build_options, parse_run_options
from tf_bigexport.pipeline.summary import read_outcomes
from tf_bigexport.storage.uris import is_uri


def construct(jobs: Sequence[JobSpec], run: RunOptions | Sequence[str] = RunOptions()
              ) -> tuple[beam.Pipeline, ResolvedRun]:
    """A pipeline with the export graph applied, not yet run (also how Dataflow construction is tested).

    ``run`` is RunOptions, or `run`-style arguments such as ["--work_dir", "w", "--runner", "DirectRunner"].
    """
    if not isinstance(run, RunOptions):
        run = parse_run_options(run)
    options, resolved = build_options(run)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, jobs, work_root=resolved.work_dir, run_id=resolved.run_id,
                outcomes_dir=resolved.outcomes_dir, storage_options=resolved.storage_options,
                registration=resolved.registration)
    return pipeline, resolved


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
    """Runs the export to completion; returns one outcome per job (published or failed).

    ``counters``, if given, receives the stages' Beam counters.
    """
    pipeline, export = construct(jobs, run)
    start = time.monotonic()
    progress("export started", jobs=len(jobs), run_id=export.run_id, work_dir=export.work_dir)
    result = pipeline.run()
    result.wait_until_finish()
    totals = stage_counters(result)
    if counters is not None:
        counters.update(totals)
    progress("export counters", **totals)
    outcomes = read_outcomes(export.outcomes_dir)
    progress("export finished", seconds=f"{time.monotonic() - start:.1f}",
             published=sum(o["status"] == "published" for o in outcomes),
             failed=sum(o["status"] != "published" for o in outcomes))
    if not export.work_dir_given and not is_uri(export.work_dir):
        # Scratch we created ourselves: published models no longer need it, failed ones are reported.
        shutil.rmtree(export.work_dir, ignore_errors=True)
    # A job with no outcome at all would be a bug in the graph; report it rather than pass silently.
    seen = {o["model_name"] for o in outcomes}
    outcomes += [{"model_name": j.name, "status": "failed", "stage": "unknown",
                  "error": "the pipeline produced no outcome for this job"} for j in jobs if j.name not in seen]
    return outcomes


def run_command(args) -> int:
    """`run --jobs FILE [--registry URI] [beam options]`: exit 1 if any job failed, 2 on a bad jobs file."""
    import sys

    from tf_bigexport.pipeline.jobs import JobsFileError, load_jobs_file
    from tf_bigexport.pipeline.summary import format_summary

    try:
        jobs = load_jobs_file(args.jobs, default_registry=args.registry)
    except JobsFileError as e:
        print(e, file=sys.stderr)
        return ExitCode.USAGE
    logs.import_tensorflow(args.verbose)  # quietly, once the jobs file is known to be good
    try:
        outcomes = run_export(jobs, args.run_options)
    except ValueError as e:  # bad pipeline options, named by Beam or by us
        print(f"run: {e}", file=sys.stderr)
        return ExitCode.USAGE
    print(format_summary(outcomes))
    if not all(o["status"] == "published" for o in outcomes):
        return ExitCode.FAILED
    from tf_bigexport.pipeline.summary import registration_failures
    return ExitCode.NOT_REGISTERED if registration_failures(outcomes) else ExitCode.OK
