"""Captured constants whose bytes stay in the eager tensor until the file is written.

TensorFlow's save turns every tensor a function captures into a Const op of
the exported graph (``TrackableConstant._export_to_saved_model_graph``): the
values are copied into a TensorProto (``tobytes``), into the C++ graph, out of
it again as a serialized NodeDef, into the GraphDef and into the SavedModel;
for a model of large constants the save then holds several copies of them.

During an image-format save, a large captured constant instead becomes a
Const op whose ``value`` has dtype and shape but no ``tensor_content``; the
content stays where it already is (the eager tensor's buffer, read without a
copy) and the splitter writes it from there as the constant's BYTES chunk, or
puts it back into the node when the proto is written unsplit. The merged
proto is the same as after TensorFlow's own save: the node is built like
``ops._create_graph_constant`` builds it, with the same name and attributes.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
from tensorflow.core.framework import attr_value_pb2, tensor_pb2
from tensorflow.python.framework import op_callbacks, ops, tensor_util

#: Captured constants of at least this many bytes are deferred.
DEFER_MIN_BYTES = 1 << 20
# TensorFlow refuses a TensorProto this large; its own error is kept.
_TENSOR_PROTO_LIMIT = 1 << 31
_UNIFORM_CHECK_STEP = 1 << 20  # elements compared at a time


def export_deferred(capture: Any, registry: dict[str, memoryview]) -> Any:
    """Creates the Const op for ``capture`` in the default graph with its
    content left out, records the content under the op's name in ``registry``
    and returns the op's output; None when TensorFlow's own path should run
    (small, uniform, non-eager or non-tensor_content values)."""
    content = _content_view(capture)
    if content is None:
        return None
    dtype = capture.dtype
    tensor = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum,
                                    tensor_shape=capture.shape.as_proto())
    value = attr_value_pb2.AttrValue(tensor=tensor)
    dtype_value = attr_value_pb2.AttrValue(type=dtype.as_datatype_enum)
    graph = ops.get_default_graph()
    output = graph._create_op_internal(  # pylint: disable=protected-access
        "Const", [], [dtype_value.type], attrs={"value": value, "dtype": dtype_value},
        name="Const").outputs[0]
    registry[output.op.name] = content
    return output


def _content_view(capture: Any) -> memoryview | None:
    """The bytes TensorFlow would put in tensor_content, as a view of the
    eager tensor's own buffer; None if this capture is not deferred."""
    if sys.byteorder != "little" or op_callbacks.should_invoke_op_callbacks():
        return None  # callbacks may replace the constant: TensorFlow's path handles them
    array = stored_array(capture, DEFER_MIN_BYTES, _TENSOR_PROTO_LIMIT)
    return None if array is None else memoryview(array.reshape(-1).view(np.uint8))


def stored_array(capture: Any, min_bytes: int, max_bytes: int | None = None) -> np.ndarray | None:
    """The value of a captured eager tensor that TensorFlow stores byte for byte
    (``tensor_content``) and that holds at least ``min_bytes`` (below
    ``max_bytes`` if given), as a numpy view of its buffer (no copy); None for
    anything else: graph tensors, strings, quantized types, scalars, values
    filled with one element (TensorFlow stores those by shape)."""
    if not isinstance(capture, ops.EagerTensor):
        return None
    dtype = capture.dtype
    if dtype.is_quantized or dtype not in tensor_util._TENSOR_CONTENT_TYPES:  # pylint: disable=protected-access
        return None
    shape = capture.shape
    if not shape.is_fully_defined() or shape.num_elements() <= 1:
        return None
    nbytes = shape.num_elements() * dtype.size
    if nbytes < min_bytes or (max_bytes is not None and nbytes >= max_bytes):
        return None
    array = capture._numpy()  # pylint: disable=protected-access  # no copy, unlike .numpy()
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.nbytes != nbytes:
        return None
    if is_uniform(array):
        return None  # TensorFlow stores these as a one-value constant with a shape
    return array


def is_uniform(array: np.ndarray) -> bool:
    """``numpy.all(array == array.flat[0])`` as TensorFlow tests it (a constant
    filled with one value is saved by shape), a slice at a time so that no
    array-sized temporary is made (and stopping early). Empty arrays are uniform."""
    flat = array.reshape(-1)
    if flat.size == 0:
        return True
    first = flat[0]
    for start in range(0, flat.size, _UNIFORM_CHECK_STEP):
        if not np.all(flat[start:start + _UNIFORM_CHECK_STEP] == first):
            return False
    return True
