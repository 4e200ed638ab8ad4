"""Flex Template entry point: submit the export pipeline and return.

The template launcher calls this file with the template's parameters as
--name=value (infra/dataflow/metadata.json) plus Dataflow's own options. It
accepts what `tf-bigexport run` accepts and, before `--` too, any option Beam
knows (the launcher chooses those); the jobs file may be a gs:// URI (read
here, at launch). The summary table is not printed: read the outcomes under
<temp_location>/tf-bigexport/<run_id>/outcomes/ afterwards.
"""
from __future__ import annotations

import os
import sys
import tempfile


def fetch_jobs_file(uri: str, scratch: str) -> str:
    """A local copy of a remote jobs file (relative sample paths in it are not supported)."""
    if "://" not in uri or uri.startswith("file://"):
        return uri
    import fsspec
    local = os.path.join(scratch, os.path.basename(uri.rstrip("/")) or "jobs.yaml")
    with fsspec.open(uri, "rb") as src, open(local, "wb") as dst:
        dst.write(src.read())
    return local


def main(argv: list[str]) -> int:
    from tf_bigexport.pipeline import cli
    from tf_bigexport.pipeline.argparsing import UsageError
    from tf_bigexport.pipeline.exit_codes import ExitCode
    from tf_bigexport.pipeline.export import construct
    from tf_bigexport.pipeline.jobs import JobsFileError, load_jobs_file
    from tf_bigexport.pipeline.options import build_options
    from tf_bigexport.pipeline.preflight import PreflightError, preflight

    try:
        args = cli.parse_args(["run", *argv], beam_options_anywhere=True)
    except UsageError as e:
        print(f"template: {e}", file=sys.stderr)
        return ExitCode.USAGE
    with tempfile.TemporaryDirectory(prefix="tf-bigexport-template-") as scratch:
        try:
            jobs = load_jobs_file(fetch_jobs_file(args.jobs, scratch), default_registry=args.registry)
        except JobsFileError as e:
            print(e, file=sys.stderr)
            return ExitCode.USAGE
    options, run = build_options(args.run_options)
    try:
        checked = preflight(jobs, run)  # from the launcher: registries reachable, versions free
    except PreflightError as e:
        print(e, file=sys.stderr)
        return ExitCode.USAGE
    for outcome in checked.done:
        print(f"job {outcome['model_name']!r}: version {outcome['version']} already published by run {run.run_id}")
    if not checked.to_run:
        return ExitCode.OK
    pipeline, _ = construct(checked.to_run, run, options)
    pipeline.run()  # submitted; the launcher must not wait for the job to finish
    print(f"submitted run {run.run_id}; outcomes: {run.outcomes_dir}")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
