"""What can load a SavedModel directory: stock TensorFlow, or only an image-format loader.

Two forms come out of imageformat.save:

* servable: a plain ``saved_model.pb``. Every stock TensorFlow loader reads
  it (``tf.saved_model.load``, C++ ``LoadSavedModel`` in TensorFlow Serving
  and Vertex AI, ``saved_model_cli``). Large captured constants may live in
  the checkpoint (constants_as_variables.py), listed under the root's
  ``_captured_constants``.
* image: ``saved_model.cpb``, the chunked program of the image format. Open-source
  TensorFlow cannot read it; ``imageformat.load`` and the C++ loader in cc/ can.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB, SAVED_MODEL_PB

PROGRAM_PB = SAVED_MODEL_PB
PROGRAM_CPB = SAVED_MODEL_CPB
SERVABLE = "servable"
IMAGE = "image"
# Protobuf's limit on one serialized message: a plain saved_model.pb must stay below it.
PLAIN_PROGRAM_LIMIT = (1 << 31) - 1
# Checkpoint keys of constants moved out of the program (constants_as_variables.ROOT_ATTRIBUTE).
_MOVED_CONSTANT_KEY = re.compile(r"^_captured_constants_*/\d+/\.ATTRIBUTES/VARIABLE_VALUE$")


@dataclasses.dataclass(frozen=True)
class Loadability:
    """Which loaders read a SavedModel directory, and why."""

    form: str                     # SERVABLE | IMAGE
    program_file: str             # saved_model.pb | saved_model.cpb
    program_bytes: int            # the program proto (merged, for a .cpb)
    constants_in_checkpoint: int  # large captured constants stored as variables
    constant_bytes: int

    @property
    def stock_tensorflow(self) -> bool:
        return self.form == SERVABLE

    @property
    def reason(self) -> str:
        """One line: what the program is and what loads it."""
        if self.form == SERVABLE:
            moved = (f"; {self.constants_in_checkpoint} large constants ({human_bytes(self.constant_bytes)}) "
                     "restored from the checkpoint" if self.constants_in_checkpoint else "")
            return f"plain {self.program_file} ({human_bytes(self.program_bytes)}){moved}: stock TensorFlow loads it"
        if self.program_bytes <= PLAIN_PROGRAM_LIMIT:
            hint = "`tf-bigexport convert --to pb` makes it a plain saved_model.pb"
        else:
            hint = ("if captured constants make it that large, `tf-bigexport convert --to servable` "
                    "moves them to the checkpoint")
        return (f"program proto {human_bytes(self.program_bytes)}: image format ({self.program_file}), "
                f"needs an image-format loader (tf_bigexport.imageformat.load, the C++ loader in cc/); {hint}")

    def to_dict(self) -> dict[str, Any]:
        """The release record's fields (JSON values)."""
        return {"loadable_by_stock_tensorflow": self.stock_tensorflow,
                "loading": {"form": self.form, "reason": self.reason, "program_file": self.program_file,
                            "program_bytes": self.program_bytes,
                            "constants_in_checkpoint": self.constants_in_checkpoint,
                            "constant_bytes_in_checkpoint": self.constant_bytes}}


def describe(export_dir: str | os.PathLike) -> Loadability:
    """The Loadability of a local SavedModel directory (reads the program file's
    size or chunk metadata and the checkpoint's index, never the whole program)."""
    export_dir = os.fspath(export_dir)
    count, constant_bytes = moved_constants(export_dir)
    cpb = os.path.join(export_dir, PROGRAM_CPB)
    pb = os.path.join(export_dir, PROGRAM_PB)
    if os.path.exists(pb):  # TensorFlow prefers the .pb when both exist
        return Loadability(SERVABLE, PROGRAM_PB, os.path.getsize(pb), count, constant_bytes)
    if os.path.exists(cpb):
        return Loadability(IMAGE, PROGRAM_CPB, merged_size(cpb), count, constant_bytes)
    raise FileNotFoundError(f"{export_dir}: no {PROGRAM_PB} or {PROGRAM_CPB}: not a SavedModel directory")


def of_program(program_file: str, program_bytes: int, saved_model: Any) -> Loadability:
    """The Loadability of a program already read (``saved_model``: the SavedModel proto,
    its large constants may be left out), e.g. from object storage by `inspect`."""
    form = IMAGE if program_file == PROGRAM_CPB else SERVABLE
    return Loadability(form, program_file, program_bytes, *moved_constants_of(saved_model))


def moved_constants_of(saved_model: Any) -> tuple[int, int]:
    """(count, bytes) of the variables listed under the root's ``_captured_constants``."""
    from tensorflow.python.framework import dtypes  # pylint: disable=import-outside-toplevel
    count = total = 0
    for meta_graph in saved_model.meta_graphs:
        nodes = meta_graph.object_graph_def.nodes
        if not nodes:
            continue
        for child in nodes[0].children:
            if not _MOVED_CONSTANT_KEY.match(f"{child.local_name}/0/.ATTRIBUTES/VARIABLE_VALUE"):
                continue
            for item in nodes[child.node_id].children:
                variable = nodes[item.node_id].variable
                elements = 1
                for dim in variable.shape.dim:
                    elements *= max(dim.size, 0)
                count += 1
                total += elements * dtypes.as_dtype(variable.dtype).size
    return count, total


def merged_size(cpb_path: str) -> int:
    """Bytes of the program proto a .cpb merges into (its chunks' sizes, from the metadata)."""
    from tf_bigexport.imageformat.proto import chunk_pb2  # pylint: disable=import-outside-toplevel
    from tf_bigexport.imageformat.riegeli import RecordReader  # pylint: disable=import-outside-toplevel
    with RecordReader(cpb_path) as reader:
        metadata = chunk_pb2.ChunkMetadata.FromString(reader.read_last_record())
    return sum(chunk.size for chunk in metadata.chunks)


def moved_constants(export_dir: str) -> tuple[int, int]:
    """(count, bytes) of the captured constants a servable save stored in the checkpoint."""
    prefix = os.path.join(export_dir, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return 0, 0
    from tensorflow.python.training import py_checkpoint_reader  # pylint: disable=import-outside-toplevel
    reader = py_checkpoint_reader.NewCheckpointReader(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    count = total = 0
    for key, shape in shapes.items():
        if _MOVED_CONSTANT_KEY.match(key):
            elements = 1
            for dim in shape:
                elements *= dim
            count += 1
            total += elements * dtypes[key].size
    return count, total
