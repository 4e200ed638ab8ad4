"""Options of `run`: our own, and the Beam/Dataflow options it hands to Beam.

Nothing is ignored: our options and a documented list of Beam options are
parsed strictly (argparsing.py); any other Beam option goes after ``--`` and
is checked against Beam's own parser before Beam sees it, so a typo is an
error naming the option, never Beam's "Discarding unparseable args".
Beam gets only Beam options: ours never enter PipelineOptions.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import uuid
from typing import Any, Sequence

from tf_bigexport.pipeline.argparsing import Option, StrictParser, UsageError, suggest
from tf_bigexport.storage.names import run_id_problem

DIRECT_RUNNER = "DirectRunner"
DATAFLOW_RUNNER = "DataflowRunner"
STORAGE_OPTIONS_ENV = "TF_BIGEXPORT_STORAGE_OPTIONS"

# Ours: the template's parameters are exactly these plus `jobs` and `registry` (tests/test_infra.py).
EXPORT_OPTIONS = (
    Option("work_dir", "local scratch directory for saved models (default: <temp dir>/tf-bigexport/<run_id>); "
                       "kept for jobs that did not publish, so a rerun with the same --run_id resumes", "DIR"),
    Option("run_id", "names this run (1-64 of [A-Za-z0-9._=-]); a rerun with the same id reports jobs already "
                     "published and reuses verified saves; Beam retries reuse claims and staging", "ID"),
    Option("outcomes_dir", "where each job's outcome (JSON) is written; must be shared storage on Dataflow "
                           "(default: <work_dir>/outcomes, or <temp_location>/tf-bigexport/<run_id>/outcomes)", "DIR"),
    Option("storage_options", f"JSON object of fsspec options for registries, e.g. an emulator endpoint "
                              f"(default: ${STORAGE_OPTIONS_ENV}); prefer ambient credentials over secrets here",
           "JSON"),
    Option("mlflow_tracking_uri", "also register each published version in this MLflow Model Registry "
                                  "(e.g. sqlite:///mlflow.db or http://mlflow:5000; needs the mlflow extra)", "URI"),
    Option("mlflow_registry_uri", "MLflow model registry URI when it differs from --mlflow_tracking_uri", "URI"),
    Option("python_path", "a directory to import job factories from, searched after the jobs file's directory "
                          "and before the current directory (repeat, or join with ':')", "DIR", kind="append"),
)

# Beam and Dataflow options `run` takes by name; every other Beam option goes after `--`.
BEAM_OPTIONS = (
    Option("runner", "Beam runner: DirectRunner (default) or DataflowRunner", "NAME"),
    Option("direct_num_workers", "DirectRunner: run this many jobs at a time", "N"),
    Option("direct_running_mode", "DirectRunner: in_memory (default), multi_threading or multi_processing", "MODE"),
    Option("project", "Dataflow: Google Cloud project", "PROJECT"),
    Option("region", "Dataflow: region, e.g. us-central1", "REGION"),
    Option("temp_location", "Dataflow: gs:// prefix for temporary files (outcomes go below it)", "URI"),
    Option("staging_location", "Dataflow: gs:// prefix for staged packages (default: under --temp_location)", "URI"),
    Option("service_account_email", "Dataflow: the workers' service account", "EMAIL"),
    Option("machine_type", "Dataflow: worker machine type, e.g. n2-highmem-8 (see infra/dataflow/README.md)", "TYPE"),
    Option("disk_size_gb", "Dataflow: worker disk size; more than twice the largest model", "GB"),
    Option("num_workers", "Dataflow: initial number of workers", "N"),
    Option("max_num_workers", "Dataflow: most workers to scale up to (one model per worker at a time)", "N"),
    Option("network", "Dataflow: VPC network", "NAME"),
    Option("subnetwork", "Dataflow: subnetwork URL, for private networks", "URL"),
    Option("sdk_container_image", "Dataflow: worker image (infra/dataflow/Dockerfile)", "IMAGE"),
    Option("setup_file", "Dataflow: setup.py the workers install (default: this project's, from a checkout)",
           "FILE"),
    Option("requirements_file", "Dataflow: requirements the workers install", "FILE"),
    Option("requirements_cache", "Dataflow: where Beam caches the requirements' packages, or skip", "DIR"),
    Option("job_name", "Dataflow: job name", "NAME"),
    Option("experiments", "Beam experiments, e.g. use_runner_v2 (repeatable)", "NAME", kind="append"),
    Option("labels", "Dataflow: job label KEY=VALUE (repeatable)", "KEY=VALUE", kind="append"),
)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What `run` was given besides the jobs file: our options, and Beam's as arguments."""
    work_dir: str | None = None
    run_id: str | None = None
    outcomes_dir: str | None = None
    storage_options: str | None = None  # JSON text
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    python_path: tuple[str, ...] = ()
    beam_args: tuple[str, ...] = ()


def registration_from(values: Any) -> dict[str, str]:
    """The registries.RegistrationConfig fields set in ``values`` (RunOptions, `register`'s arguments)."""
    return {k: getattr(values, k) for k in ("mlflow_tracking_uri", "mlflow_registry_uri") if getattr(values, k)}


@dataclasses.dataclass(frozen=True)
class ResolvedRun:
    """RunOptions with every default filled in for the runner in use."""
    work_dir: str
    run_id: str
    outcomes_dir: str
    work_dir_given: bool
    storage_options: dict
    registration: dict
    python_path: tuple[str, ...]
    runner: str
    launch_dir: str  # the current directory at launch: searched last for job factories

    def task_settings(self) -> dict[str, Any]:
        """graph.to_task's keyword arguments for this run."""
        return {"work_root": self.work_dir, "run_id": self.run_id, "storage_options": self.storage_options,
                "registration": self.registration, "python_path": self.python_path, "launch_dir": self.launch_dir}


def add_run_options(parser) -> None:
    """Our options, then the documented Beam options, as two groups of `parser`."""
    ours = parser.add_argument_group("export options")
    for option in EXPORT_OPTIONS:
        option.add_to(ours)
    beam = parser.add_argument_group(
        "Beam and Dataflow options", "passed to Beam; any other Beam option goes after --, "
                                     "e.g. -- --worker_zone=us-central1-b")
    for option in BEAM_OPTIONS:
        option.add_to(beam, dest=f"beam_{option.name}")


def run_options_from(namespace, beam_tail: Sequence[str] = ()) -> RunOptions:
    """RunOptions from parsed `run` arguments plus the Beam options given after `--`."""
    values: dict[str, Any] = {o.name: getattr(namespace, o.name, None) for o in EXPORT_OPTIONS}
    python_path = tuple(part for entry in values.pop("python_path") or () for part in entry.split(os.pathsep)
                        if part)
    beam_args: list[str] = []
    for option in BEAM_OPTIONS:
        value = getattr(namespace, f"beam_{option.name}", None)
        for item in (value or []) if option.kind == "append" else ([] if value is None else [value]):
            beam_args.append(f"--{option.name}={item}")
    beam_args += check_beam_args(beam_tail)
    return RunOptions(python_path=python_path, beam_args=tuple(beam_args), **values)


def parse_run_options(argv: Sequence[str]) -> RunOptions:
    """RunOptions from `run`-style arguments (without --jobs/--registry), e.g. ["--work_dir", "w"]."""
    parser = StrictParser(prog="run options")
    add_run_options(parser)
    head, tail = StrictParser.split_tail(list(argv))
    return run_options_from(parser.parse_strictly(head), tail)


# ---- Beam's own parser ------------------------------------------------------------

def beam_parser():
    """An argparse parser that knows every Beam pipeline option (Beam's own classes)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class _Parser(_BeamArgumentParser):
        def error(self, message):
            raise UsageError(f"Beam option: {message}")

    parser = _Parser(allow_abbrev=False, add_help=False)
    seen = set()
    for cls in PipelineOptions.__subclasses__():
        if str(cls) not in seen and cls.__module__.startswith("apache_beam."):
            seen.add(str(cls))
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def check_beam_args(args: Sequence[str], *, unknown: str = "error") -> list[str]:
    """``args`` with each option spelled the way Beam knows it; an option Beam does not know is an
    error naming it (``unknown="error"``) or dropped with a warning (``unknown="warn"``)."""
    if not args:
        return []
    parser = beam_parser()
    known = {s for action in parser._actions for s in action.option_strings}  # noqa: SLF001
    spelled = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and name not in known:
            for other in (name[:2] + name[2:].replace("-", "_"), name[:2] + name[2:].replace("_", "-")):
                if other in known:
                    name = other
                    break
        spelled.append(name + eq + value)
    _, leftover = parser.parse_known_args(spelled)
    if leftover:
        options = [a for a in leftover if a.startswith("-")]
        if unknown == "warn":
            import logging
            logging.getLogger("tf_bigexport").warning("ignoring options Beam does not know: %s", " ".join(leftover))
            return [a for a in spelled if a not in leftover]
        first = options[0] if options else leftover[0]
        raise UsageError(f"unrecognized Beam option {first.partition('=')[0]}"
                         f"{suggest(first.partition('=')[0], known)}" if options else
                         f"unexpected argument {first!r} among the Beam options")
    return spelled


# ---- resolving defaults ---------------------------------------------------------

def project_setup_file() -> str | None:
    """The project's setup.py when running from a source checkout (what Dataflow workers install)."""
    candidate = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
    return candidate if os.path.exists(candidate) else None


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def default_work_root() -> str:
    """Where runs keep their work directories unless --work_dir says otherwise (and where gc looks)."""
    return os.path.join(tempfile.gettempdir(), "tf-bigexport")


def build_options(run: RunOptions) -> tuple[Any, ResolvedRun]:
    """Beam's PipelineOptions from the Beam arguments, and our options with defaults filled in.

    DirectRunner: Beam's defaults (in-process; --direct_num_workers and
    --direct_running_mode spread jobs over threads or processes). DataflowRunner:
    the workers install this project from its setup.py unless a container image
    or setup file was given. Raises ValueError naming a bad option.
    """
    from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, SetupOptions,
                                                      StandardOptions, WorkerOptions)
    options = PipelineOptions(list(run.beam_args))
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or DIRECT_RUNNER
    run_id = run.run_id or new_run_id()
    problem = run_id_problem(run_id)  # part of every job key: staging prefixes, claims
    if problem:
        raise ValueError(f"--run_id: {problem}")
    # Stable per run id, so a rerun with the same --run_id finds what the first run saved.
    work_dir = run.work_dir or os.path.join(default_work_root(), run_id)
    outcomes_dir = run.outcomes_dir
    if is_dataflow(standard.runner):
        setup = options.view_as(SetupOptions)
        worker = options.view_as(WorkerOptions)
        if not (setup.setup_file or setup.requirements_file or worker.sdk_container_image):
            setup.setup_file = project_setup_file()
        setup.save_main_session = False
        temp_location = options.view_as(GoogleCloudOptions).temp_location
        if not outcomes_dir and temp_location:
            outcomes_dir = f"{temp_location.rstrip('/')}/tf-bigexport/{run_id}/outcomes"
    resolved = ResolvedRun(
        work_dir=work_dir, run_id=run_id, outcomes_dir=outcomes_dir or os.path.join(work_dir, "outcomes"),
        work_dir_given=run.work_dir is not None, storage_options=storage_options_from(run.storage_options),
        registration=registration_from(run), python_path=tuple(os.path.abspath(p) for p in run.python_path),
        runner=standard.runner if isinstance(standard.runner, str) else type(standard.runner).__name__,
        launch_dir=os.getcwd())
    return options, resolved


def is_dataflow(runner) -> bool:
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name in (DATAFLOW_RUNNER, "dataflow")


def storage_options_from(text: str | None) -> dict:
    """fsspec options from JSON text, falling back to $TF_BIGEXPORT_STORAGE_OPTIONS."""
    text = text if text is not None else os.environ.get(STORAGE_OPTIONS_ENV)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--storage_options / ${STORAGE_OPTIONS_ENV}: not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--storage_options / ${STORAGE_OPTIONS_ENV}: must be a JSON object")
    return value
