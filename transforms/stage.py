"""Stage 4a, Stage: upload the saved directory to the registry's staging
prefix. First, a job whose release already exists (a rerun with the same run
id) uploads nothing: the release stands and the state carries it on. Staging
skips objects already staged with the same size and checksum, so a retried
bundle uploads only what is missing."""
from __future__ import annotations

import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import RegistryStageDoFn, apply_stage, counter


def stage(state: ExportState, registry: Any = None) -> ExportState:
    start = time.monotonic()
    publication = state.publication(registry)
    record = publication.published()
    if record is not None:
        return state.advance("stage", time.monotonic() - start, staging_uri=publication.staging_uri,
                             version=record.version, release_record=record.to_dict())
    return state.advance("stage", time.monotonic() - start, staging_uri=publication.stage(state.saved_dir))


class _StageToRegistry(RegistryStageDoFn):
    stage = "stage"

    def __init__(self) -> None:
        super().__init__()
        self._bytes = counter("bytes_staged")

    def run(self, state: ExportState) -> Iterable[ExportState]:
        staged = stage(state, self.registries.of(state.task))
        if staged.release_record is None:
            self._bytes.inc(sum(f.size for f in staged.manifest.files))
        yield staged


class Stage(beam.PTransform):
    """ExportState (fingerprinted) -> ExportState with a staging URI; returns (ok, failed)."""

    def expand(self, fingerprinted):
        return apply_stage(fingerprinted, "UploadToStaging", _StageToRegistry())
