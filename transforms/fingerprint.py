"""Stage 3, Fingerprint: TensorFlow's fingerprint of the saved directory and
the storage manifest (sizes and checksums of every file). The fingerprint
itself is the format library's (imageformat.fingerprints)."""
from __future__ import annotations

import os
import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.imageformat.fingerprints import compute_fingerprint_bytes, fingerprint_dict
from tf_bigexport.local_files import write_file
from tf_bigexport.savedmodel_files import FINGERPRINT_PB
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage


def read_or_write_fingerprint(saved_dir: str) -> dict[str, Any]:
    """The fingerprint.pb written at save time; created here if the save did not write one."""
    path = os.path.join(saved_dir, FINGERPRINT_PB)
    if not os.path.exists(path):
        write_file(path, compute_fingerprint_bytes(saved_dir, trusted=True))  # this job's own save
    with open(path, "rb") as f:
        return fingerprint_dict(f.read(), name=path)


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
