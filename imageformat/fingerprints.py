"""TensorFlow's SavedModel fingerprint (fingerprint.pb): computing, reading, comparing.

One definition of the fields that identify a model, used by the save-time
Fingerprint stage, the pipeline's verify stage, ``tf-bigexport verify`` and
``inspect``.

``compute_fingerprint_bytes`` runs TensorFlow's own C++ ``CreateFingerprintDef``
(the conformance oracle for .cpb files), but only on files our readers
accepted first: TensorFlow's C++ trusts the chunk indices, field paths and
file types it is handed (a forged chunk index crashes it with SIGSEGV, a
FIFO hangs it), so ``check_for_tensorflow`` vets the program file and the
checkpoint index under ``limits.ReadLimits`` before TensorFlow opens them.
"""
from __future__ import annotations

import os
from typing import Any

from tf_bigexport.imageformat import program_files
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.limits import ReadLimits
from tf_bigexport.savedmodel_files import FINGERPRINT_PB, SAVED_MODEL_CPB, SAVED_MODEL_PB

CHECKPOINT_INDEX = os.path.join("variables", "variables.index")
#: The fields that identify a model; uuid and version are not content hashes.
HASH_FIELDS = ("saved_model_checksum", "graph_def_program_hash", "signature_def_hash",
               "saved_object_graph_hash", "checkpoint_hash")
# The singleprint leaves out the checksum (not stable across saves of the same model).
_SINGLEPRINT_FIELDS = HASH_FIELDS[1:]


class FingerprintError(ValueError):
    """TensorFlow cannot fingerprint a SavedModel directory; the message names it."""


def compute_fingerprint_bytes(saved_dir: str, *, limits: ReadLimits | None = None,
                              trusted: bool = False) -> bytes:
    """TensorFlow's own serialized FingerprintDef of a directory (.pb or .cpb).

    Unless ``trusted`` (a directory this process just wrote), the files
    TensorFlow will read are checked by our readers first, under ``limits``
    (default: derived from each file's size); a refused file raises the
    reader's error (a ValueError naming the file) and TensorFlow never sees it.
    """
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    if not trusted:
        check_for_tensorflow(saved_dir, limits=limits)
    try:
        return fingerprinting.CreateFingerprintDef(saved_dir)
    except Exception as e:  # FingerprintException carries TensorFlow's reason
        raise FingerprintError(f"{saved_dir}: TensorFlow cannot fingerprint this SavedModel: {e}") from None


def fingerprint_dict(serialized: bytes, *, name: str = FINGERPRINT_PB) -> dict[str, Any]:
    """The hash fields as decimal strings (uint64 does not survive every JSON
    reader) plus the singleprint; ``name`` labels a parse error."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import fingerprint_pb2
    try:
        proto = fingerprint_pb2.FingerprintDef.FromString(serialized)
    except DecodeError as e:
        raise FingerprintError(f"{name}: not a valid FingerprintDef ({e})") from None
    fields = {field: str(getattr(proto, field)) for field in HASH_FIELDS}
    fields["singleprint"] = "/".join(fields[field] for field in _SINGLEPRINT_FIELDS)
    return fields


def fingerprint_mismatches(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """One line per hash field whose recorded and recomputed values differ."""
    return [f"{field}: recorded {expected.get(field)}, recomputed {actual.get(field)}"
            for field in HASH_FIELDS if str(expected.get(field)) != str(actual.get(field))]


def check_for_tensorflow(saved_dir: str | os.PathLike, limits: ReadLimits | None = None) -> None:
    """Reads, with our readers and under ``limits``, everything TensorFlow's
    CreateFingerprintDef will read in ``saved_dir``: the directory's file
    types, the program file TensorFlow picks (.cpb when there is one, as in
    its Linux build, else .pb; every chunk read) and the checkpoint index;
    then checks what its C++ assumes without checking (see
    ``_tensorflow_assumptions``). Raises a ValueError naming the file if any
    is refused."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_bigexport.imageformat import chunked
    saved_dir = os.fspath(saved_dir)
    program_files.check_tree(saved_dir)
    cpb = os.path.join(saved_dir, SAVED_MODEL_CPB)
    if os.path.exists(cpb):
        path = cpb
        chunked.check_chunked(cpb, limits=limits)  # every chunk: hashes, sizes, message counts
        saved_model = chunked.read_chunked(cpb, saved_model_pb2.SavedModel, skip_large_constants=True,
                                           limits=limits)
    else:
        path = os.path.join(saved_dir, SAVED_MODEL_PB)
        saved_model = program_files.read_pb(path, limits)
    problem = _tensorflow_assumptions(saved_model)
    if problem:
        raise ChunkedFormatError(path, f"{problem} (TensorFlow's fingerprinting would crash on it)")
    index = os.path.join(saved_dir, CHECKPOINT_INDEX)
    if os.path.exists(index):
        bound = (limits or ReadLimits.for_file(0)).checkpoint_index_bytes
        program_files.check_regular(index, bound, "checkpoint index")


_FUNCTION_CALLS = ("PartitionedCall", "StatefulPartitionedCall")
_DT_STRING = 7


def _tensorflow_assumptions(saved_model) -> str | None:
    """What TensorFlow's C++ fingerprinting (fingerprinting.cc, regularization/simple_delete.cc)
    takes for granted: a first meta graph, an "f" attribute on function calls, "dtype" on
    constants and "value" on string constants. None when all hold."""
    if not saved_model.meta_graphs:
        return "the SavedModel has no meta graph"
    for node in saved_model.meta_graphs[0].graph_def.node:
        if node.op in _FUNCTION_CALLS and "f" not in node.attr:
            return f"node {node.name!r} ({node.op}) has no attribute 'f'"
        if node.op == "Const":
            if "dtype" not in node.attr:
                return f"constant {node.name!r} has no attribute 'dtype'"
            if node.attr["dtype"].type == _DT_STRING and "value" not in node.attr:
                return f"string constant {node.name!r} has no attribute 'value'"
    return None
