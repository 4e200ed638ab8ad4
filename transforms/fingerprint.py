"""Stage 3, Fingerprint: TensorFlow's fingerprint of the saved directory and
the storage manifest (sizes and checksums of every file)."""
from __future__ import annotations

import os
import time
from typing import Any, Iterable

import apache_beam as beam

from tf_bigexport.local_files import write_file
from tf_bigexport.savedmodel_files import FINGERPRINT_PB
from tf_bigexport.transforms.elements import ExportState
from tf_bigexport.transforms.stage_dofn import StageDoFn, apply_stage

FINGERPRINT_FILENAME = FINGERPRINT_PB
# The fields that identify a model; uuid and version are not content hashes.
HASH_FIELDS = ("saved_model_checksum", "graph_def_program_hash", "signature_def_hash",
               "saved_object_graph_hash", "checkpoint_hash")


def compute_fingerprint_bytes(saved_dir: str) -> bytes:
    """TensorFlow's own FingerprintDef of a directory (reads .pb and .cpb)."""
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
    try:
        return fingerprinting.CreateFingerprintDef(saved_dir)
    except Exception as e:  # FingerprintException carries TensorFlow's reason
        raise ValueError(f"{saved_dir}: TensorFlow cannot fingerprint this SavedModel: {e}") from None


def fingerprint_dict(serialized: bytes) -> dict[str, Any]:
    """The hash fields as decimal strings (uint64 does not survive every JSON reader) plus the singleprint."""
    from tensorflow.core.protobuf import fingerprint_pb2
    proto = fingerprint_pb2.FingerprintDef.FromString(serialized)
    fields = {name: str(getattr(proto, name)) for name in HASH_FIELDS}
    fields["singleprint"] = "/".join(fields[name] for name in HASH_FIELDS[1:])
    return fields


def read_or_write_fingerprint(saved_dir: str) -> dict[str, Any]:
    """The fingerprint.pb written at save time; created here if the save did not write one."""
    path = os.path.join(saved_dir, FINGERPRINT_FILENAME)
    if not os.path.exists(path):
        write_file(path, compute_fingerprint_bytes(saved_dir))
    with open(path, "rb") as f:
        return fingerprint_dict(f.read())


def fingerprint_mismatches(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [f"{name}: recorded {expected.get(name)}, recomputed {actual.get(name)}"
            for name in HASH_FIELDS if str(expected.get(name)) != str(actual.get(name))]


def fingerprint(state: ExportState) -> ExportState:
    """Records fingerprint.pb's values; Verify recomputes them from the staged bytes."""
    from tf_bigexport import storage
    start = time.monotonic()
    recorded = read_or_write_fingerprint(state.saved_dir)
    manifest = storage.build_manifest(state.saved_dir)
    return state.advance("fingerprint", time.monotonic() - start, fingerprint=recorded, manifest=manifest)


class _Fingerprint(StageDoFn):
    stage = "fingerprint"

    def run(self, state: ExportState) -> Iterable[ExportState]:
        yield fingerprint(state)


class Fingerprint(beam.PTransform):
    """ExportState (saved) -> ExportState with fingerprint and manifest; returns (ok, failed)."""

    def expand(self, saved):
        return apply_stage(saved, "FingerprintAndManifest", _Fingerprint())
