"""Stage 4a, Stage: upload the saved directory to the registry's staging
prefix. Registry.stage skips objects already staged with the same size and
checksum, so a retried bundle uploads only what is missing."""
from __future__ import annotations

import time
from typing import Iterable

import apache_beam as beam

from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage, counter


def stage(state: ExportState) -> ExportState:
    start = time.monotonic()
    registry = state.registry()
    staging_uri = registry.stage(state.saved_dir, state.manifest, state.task.job_key)
    return state.advance("stage", time.monotonic() - start, staging_uri=staging_uri)


class _StageToRegistry(StageDoFn):
    stage = "stage"

    def __init__(self) -> None:
        super().__init__()
        self._bytes = counter("bytes_staged")

    def run(self, state: ExportState) -> Iterable[ExportState]:
        staged = stage(state)
        self._bytes.inc(sum(f.size for f in staged.manifest.files))
        yield staged


class Stage(beam.PTransform):
    """ExportState (fingerprinted) -> ExportState with a staging URI; returns (ok, failed)."""

    def expand(self, fingerprinted):
        return apply_stage(fingerprinted, "UploadToStaging", _StageToRegistry())
