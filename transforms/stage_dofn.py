"""The shared shape of a stage: a DoFn whose exceptions become tagged failures.

A job that fails is reported (with its name and stage) on the ``failed``
output and goes no further; the other jobs carry on.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue

from tf_bigexport.transforms.elements import ExportState, ExportTask, Registries, StageFailure

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


def describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Keep the message whole when short; long TensorFlow errors keep their first and
    # last lines (the last says what went wrong after "in user code:" and a stack).
    if len(text) > 600:
        text = lines[0][:600] + (" ... " + lines[-1][:600] if len(lines) > 1 else " ...")
    return f"{type(error).__name__}: {text}"


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
        start = time.monotonic()
        log.info("job=%s stage=%s status=started", name, self.stage)
        try:
            outputs = list(self.run(element))
        except Exception as e:  # a job's failure must not stop the other jobs
            self._failures.inc()
            log.warning("job=%s stage=%s status=failed error=%s", name, self.stage, describe(e))
            log.debug("job=%s stage=%s traceback:\n%s", name, self.stage, traceback.format_exc())
            yield pvalue.TaggedOutput(FAILED, StageFailure(name, self.stage, describe(e)))
            return
        log.info("job=%s stage=%s status=done seconds=%.1f", name, self.stage, time.monotonic() - start)
        yield from outputs


class RegistryStageDoFn(StageDoFn):
    """A stage that talks to registries: each one opened once per DoFn instance, in setup."""

    def setup(self) -> None:
        self.registries = Registries()


def apply_stage(pcoll: beam.PCollection, label: str, dofn: StageDoFn):
    """Applies a StageDoFn; returns (succeeded, failed) PCollections."""
    results = pcoll | label >> beam.ParDo(dofn).with_outputs(FAILED, main="ok")
    return results.ok, results[FAILED]
