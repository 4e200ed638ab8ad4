"""The shared shape of a stage: a DoFn whose exceptions become tagged failures.

A job that fails is reported (with its name and stage) on the ``failed``
output and goes no further; the other jobs carry on.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue

from tf_bigexport.transforms.elements import ExportState, ExportTask, Registries, StageFailure
from tf_bigexport.transforms.errors import describe
from tf_bigexport.transforms.job_progress import stage_progress

FAILED = "failed"
METRICS_NAMESPACE = "tf_bigexport"

log = logging.getLogger("tf_bigexport")


def counter(name: str) -> Any:
    return beam.metrics.Metrics.counter(METRICS_NAMESPACE, name)


def model_name_of(element: Any) -> str:
    if isinstance(element, ExportState):
        return element.task.model_name
    if isinstance(element, ExportTask):
        return element.model_name
    if isinstance(element, tuple) and element and isinstance(element[0], str):
        return element[0]
    return "<unknown>"


class StageDoFn(beam.DoFn):
    """Subclasses set ``stage`` and implement ``run(element) -> Iterable``."""
    stage = "stage"

    def __init__(self) -> None:
        super().__init__()
        self._failures = counter("failed_jobs")

    def run(self, element: Any) -> Iterable[Any]:
        raise NotImplementedError

    def model_name(self, element: Any) -> str:
        return model_name_of(element)

    def process(self, element: Any) -> Iterable[Any]:
        name = self.model_name(element)
        try:
            # Reports the stage's progress and its end (job_progress: a live line or sparse log lines).
            with stage_progress(name, self.stage, describe):
                outputs = list(self.run(element))
        except Exception as e:  # a job's failure must not stop the other jobs
            self._failures.inc()
            log.debug("job=%s stage=%s traceback:\n%s", name, self.stage, traceback.format_exc())
            stage = getattr(e, "stage", None) or self.stage  # a combined stage says which part failed
            yield pvalue.TaggedOutput(FAILED, StageFailure(name, stage, describe(e)))
            return
        yield from outputs


class RegistryStageDoFn(StageDoFn):
    """A stage that talks to registries: each one opened once per DoFn instance, in setup."""

    def setup(self) -> None:
        self.registries = Registries()


def apply_stage(pcoll: beam.PCollection, label: str, dofn: StageDoFn):
    """Applies a StageDoFn; returns (succeeded, failed) PCollections."""
    results = pcoll | label >> beam.ParDo(dofn).with_outputs(FAILED, main="ok")
    return results.ok, results[FAILED]
