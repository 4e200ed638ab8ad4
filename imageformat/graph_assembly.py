"""Build a tf.Graph's GraphDef piece by piece instead of in one serialization.

TensorFlow's ``Graph._as_graph_def`` asks C++ for the whole GraphDef as one
serialized buffer and parses it in Python; protobuf refuses that past 2 GiB.
Here every node comes from its own operation's NodeDef and every function
from its own FunctionDef, so only single pieces must stay under the limit.

For graphs TensorFlow can serialize, the result equals TensorFlow's own
(``_as_graph_def``), except that the function library follows the graph's
insertion order while TensorFlow's C++ follows a hash map's; nothing reads
that order (the fingerprint clears the library before hashing).
"""
from __future__ import annotations

from typing import Any

from tensorflow.core.framework import function_pb2
from tensorflow.core.framework import graph_pb2
from tensorflow.core.framework import node_def_pb2
from tensorflow.python.framework import dtypes
from tensorflow.python.framework import ops
from tensorflow.python.ops import handle_data_util

_OUTPUT_SHAPES = "_output_shapes"
_INPUT_SHAPES = "_input_shapes"


def assemble_graph_def(graph: ops.Graph, *, add_shapes: bool = False) -> graph_pb2.GraphDef:
    """Returns ``graph``'s GraphDef, like ``graph._as_graph_def(add_shapes=...)[0]``."""
    graph_def = graph_pb2.GraphDef()
    with graph._lock:  # pylint: disable=protected-access
        for op in graph.get_operations():
            _add_node(graph_def, op, add_shapes)
        graph_def.versions.CopyFrom(graph.graph_def_versions)
        functions = list(graph._functions.values())  # pylint: disable=protected-access
        for function in functions:
            graph_def.library.function.add().CopyFrom(function.definition)
            gradient = getattr(function, "_grad_func", None)
            if gradient is not None:
                graph_def.library.gradient.add(
                    function_name=function.name, gradient_func=gradient.name)
        # TensorFlow drops the library (gradients included) when it holds no function.
        if not graph_def.library.function:
            graph_def.ClearField("library")
        if add_shapes:
            for function_def in graph_def.library.function:
                _add_function_shapes(graph, function_def)
    return graph_def


def _add_node(graph_def: graph_pb2.GraphDef, op: ops.Operation, add_shapes: bool) -> None:
    node = graph_def.node.add()
    # Parse the C++ bytes straight into the repeated field: a node may hold a
    # constant of hundreds of MB, and an intermediate NodeDef would copy it again.
    node.MergeFromString(op._node_def)  # pylint: disable=protected-access
    _set_inputs_from_edges(node, op)
    if add_shapes and op.outputs:
        node.attr[_OUTPUT_SHAPES].list.shape.extend(
            [output.get_shape().as_proto() for output in op.outputs])


def _set_inputs_from_edges(node: node_def_pb2.NodeDef, op: ops.Operation) -> None:
    """Writes inputs the way C++ Graph::ToGraphDef does: from the graph's edges.

    The stored NodeDef keeps inputs as requested when the op was built; the
    edges are what the graph holds now (updated inputs, control inputs added
    later, control inputs sorted by name).
    """
    data_inputs = [
        tensor.op.name if tensor.value_index == 0 else f"{tensor.op.name}:{tensor.value_index}"
        for tensor in op.inputs
    ]
    control_inputs = sorted(f"^{control.name}" for control in op.control_inputs)
    requested_data_inputs = [name for name in node.input if not name.startswith("^")]
    if len(data_inputs) < len(requested_data_inputs):
        # An unconnected input (possible in imported v1 graphs): C++ keeps
        # the requested name for the missing edge; keep the NodeDef's then.
        data_inputs = requested_data_inputs
    del node.input[:]
    node.input.extend(data_inputs + control_inputs)


def _add_function_shapes(graph: ops.Graph, function_def: function_pb2.FunctionDef) -> None:
    """Adds the shape attributes TensorFlow's add_shapes puts on library functions."""
    defined_function = graph._functions[function_def.signature.name]  # pylint: disable=protected-access
    try:
        func_graph = defined_function.graph
    except AttributeError:  # legacy _DefinedFunction: no graph to read shapes from
        return
    # Indexing the map creates the attribute even when nothing is added below;
    # TensorFlow's output has the (empty) entry in that case too.
    input_shapes = function_def.attr[_INPUT_SHAPES]
    try:
        func_graph_inputs = func_graph.inputs
    except AttributeError:
        return
    if not input_shapes.list.shape:
        for tensor, arg_def in zip(func_graph_inputs, function_def.signature.input_arg):
            input_shapes.list.shape.add().CopyFrom(tensor.get_shape().as_proto())
            if tensor.dtype == dtypes.resource:
                _copy_handle_data(tensor, arg_def)
    for tensor, arg_def in zip(func_graph.outputs, function_def.signature.output_arg):
        if tensor.dtype == dtypes.resource:
            _copy_handle_data(tensor, arg_def)
    for node in function_def.node_def:
        try:
            op = func_graph.get_operation_by_name(node.name)
        except KeyError:
            continue
        outputs = op.outputs
        if op.type == "StatefulPartitionedCall":
            # Gradient rewriting may have appended outputs the call's Tout lacks.
            outputs = outputs[:len(node.attr["Tout"].list.type)]
        node.attr[_OUTPUT_SHAPES].list.shape.extend(
            [output.get_shape().as_proto() for output in outputs])


def _copy_handle_data(tensor: Any, arg_def: Any) -> None:
    handle_data = handle_data_util.get_resource_handle_data(tensor)
    if handle_data.shape_and_type:
        first = handle_data.shape_and_type[0]
        entry = arg_def.handle_data.add()
        entry.dtype = first.dtype
        entry.shape.CopyFrom(first.shape)
