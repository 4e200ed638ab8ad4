"""Pipeline options: our own (work dir, run id, outcomes) plus Beam's, with
defaults that suit each runner."""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid

from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  SetupOptions, StandardOptions, WorkerOptions)

from tf_bigexport.storage.names import run_id_problem

DIRECT_RUNNER = "DirectRunner"
STORAGE_OPTIONS_ENV = "TF_BIGEXPORT_STORAGE_OPTIONS"
DATAFLOW_RUNNER = "DataflowRunner"


class ExportOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--work_dir", default=None,
                            help="local scratch directory for saved models (default: a temp dir per run)")
        parser.add_argument("--run_id", default=None,
                            help="names this run; Beam retries within a run reuse version claims and staging")
        parser.add_argument("--outcomes_dir", default=None,
                            help="where each job's outcome (JSON) is written; must be shared storage on "
                                 "Dataflow (default: <work_dir>/outcomes, or <temp_location>/... on Dataflow)")
        parser.add_argument("--storage_options", default=None,
                            help="JSON object of fsspec options for registries, e.g. an emulator endpoint "
                                 f"(default: ${STORAGE_OPTIONS_ENV}); prefer ambient credentials over secrets here")
        parser.add_argument("--mlflow_tracking_uri", default=None,
                            help="also register each published version in this MLflow Model Registry "
                                 "(e.g. sqlite:///mlflow.db or http://mlflow:5000; needs the mlflow extra)")
        parser.add_argument("--mlflow_registry_uri", default=None,
                            help="MLflow model registry URI when it differs from --mlflow_tracking_uri")


def registration_of(export: "ExportOptions") -> dict:
    """registries.RegistrationConfig fields from the pipeline options."""
    return {k: v for k, v in (("mlflow_tracking_uri", export.mlflow_tracking_uri),
                              ("mlflow_registry_uri", export.mlflow_registry_uri)) if v}


def project_setup_file() -> str | None:
    """The project's setup.py when running from a source checkout (what Dataflow workers install)."""
    candidate = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
    return candidate if os.path.exists(candidate) else None


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def build_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from command-line style args, with our defaults filled in.

    DirectRunner: Beam's defaults (in-process; pass --direct_num_workers and
    --direct_running_mode to spread jobs over processes). DataflowRunner: the
    workers install this project from its setup.py unless a container image
    or setup file was given.
    """
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or DIRECT_RUNNER
    export = options.view_as(ExportOptions)
    export.run_id = export.run_id or new_run_id()
    problem = run_id_problem(export.run_id)  # part of every job key: staging prefixes, claims
    if problem:
        raise ValueError(f"--run_id: {problem}")
    if _is_dataflow(standard.runner):
        setup = options.view_as(SetupOptions)
        worker = options.view_as(WorkerOptions)
        if not (setup.setup_file or setup.requirements_file or worker.sdk_container_image):
            setup.setup_file = project_setup_file()
        setup.save_main_session = False
        export.work_dir = export.work_dir or os.path.join(tempfile.gettempdir(), "tf-bigexport", export.run_id)
        temp_location = options.view_as(GoogleCloudOptions).temp_location
        if not export.outcomes_dir and temp_location:
            export.outcomes_dir = f"{temp_location.rstrip('/')}/tf-bigexport/{export.run_id}/outcomes"
    else:
        export.work_dir = export.work_dir or os.path.join(tempfile.gettempdir(), "tf-bigexport", export.run_id)
    export.outcomes_dir = export.outcomes_dir or os.path.join(export.work_dir, "outcomes")
    return options


def _is_dataflow(runner) -> bool:
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
