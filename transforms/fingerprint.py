"""Stage 3, Fingerprint: TensorFlow's fingerprint of the saved directory and
the storage manifest (sizes and checksums of every file). The fingerprint
itself is the format library's (imageformat.fingerprints)."""
from __future__ import annotations

import time
from typing import Iterable

import apache_beam as beam

from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.save import read_or_write_fingerprint
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage


def fingerprint(state: ExportState) -> ExportState:
    """Records fingerprint.pb's values (read where the model was saved) and the manifest; Verify
    recomputes both from the staged bytes. The manifest also goes into the save's receipt, which is
    what lets a rerun reuse this save."""
    from tf_bigexport import storage
    from tf_bigexport.transforms import save_receipt
    start = time.monotonic()
    recorded = dict(state.fingerprint) or read_or_write_fingerprint(state.saved_dir)
    manifest = state.manifest or storage.build_manifest(state.saved_dir)
    save_receipt.update(state.task.work_dir, manifest=manifest.to_list())
    return state.advance("fingerprint", time.monotonic() - start, fingerprint=recorded, manifest=manifest)


class _Fingerprint(StageDoFn):
    stage = "fingerprint"

    def run(self, state: ExportState) -> Iterable[ExportState]:
        yield fingerprint(state)


class Fingerprint(beam.PTransform):
    """ExportState (saved) -> ExportState with fingerprint and manifest; returns (ok, failed)."""

    def expand(self, saved):
        return apply_stage(saved, "FingerprintAndManifest", _Fingerprint())
