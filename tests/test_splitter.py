"""The splitter: chunk layout, size bounds, round trips through the merger."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import function_pb2, graph_pb2, node_def_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from tf_bigexport.imageformat import fieldpath, merger, splitter
from tf_bigexport.imageformat.chunk_errors import SplitError
from tf_bigexport.imageformat.proto import chunk_pb2
from saved_model_cases import CASE_NAMES, saved_case

MESSAGE, BYTES = chunk_pb2.ChunkInfo.MESSAGE, chunk_pb2.ChunkInfo.BYTES


def canonical(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def const_node(name: str, values: np.ndarray) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = types_pb2.DT_FLOAT
    tensor = node.attr["value"].tensor
    tensor.dtype = types_pb2.DT_FLOAT
    for size in values.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = values.astype(np.float32).tobytes()
    return node


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("max_chunk_size", [300, 1000, 4096, 20000])
def test_round_trip_real_saved_model(case, max_chunk_size):
    original = saved_case(case).proto()
    before = canonical(original)
    chunks, metadata = splitter.split(original, max_chunk_size)
    assert len(chunks) > 1 and len(metadata.chunks) == len(chunks)
    merged = merger.merge(chunks, metadata, saved_model_pb2.SavedModel)
    assert canonical(merged) == before
    assert canonical(original) == before, "split must not modify its input"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_small_model_stays_one_chunk(case):
    original = saved_case(case).proto()
    chunks, metadata = splitter.split(original)
    assert chunks == [canonical(original)]
    assert metadata.message == chunk_pb2.ChunkedMessage(chunk_index=0)


def test_layout_of_split_saved_model():
    original = saved_case("calculator").proto()
    max_chunk_size = 1000
    threshold = max_chunk_size // 4
    chunks, metadata = splitter.split(original, max_chunk_size)
    root = saved_model_pb2.SavedModel.DESCRIPTOR
    graph = original.meta_graphs[0].graph_def

    # Chunk 0: the SavedModel without nodes and functions, everything else kept.
    chunk0 = saved_model_pb2.SavedModel.FromString(chunks[0])
    assert not chunk0.meta_graphs[0].graph_def.node
    assert not chunk0.meta_graphs[0].graph_def.library.function
    assert chunk0.meta_graphs[0].object_graph_def == original.meta_graphs[0].object_graph_def
    assert chunk0.meta_graphs[0].signature_def == original.meta_graphs[0].signature_def

    # Chunks are numbered in the order TensorFlow's merger applies them.
    fields = list(metadata.message.chunked_fields)
    assert [f.message.chunk_index for f in fields] == list(range(1, len(chunks)))
    assert fields == sorted(fields, key=fieldpath.merge_order_key)

    by_path: dict[str, list[int]] = {}
    for f in fields:
        by_path.setdefault(fieldpath.describe(root, f.field_tag), []).append(f.message.chunk_index)

    # Every large constant (graph and function bodies) is a BYTES chunk holding its content.
    expected_constants = {}
    for k, node in enumerate(graph.node):
        if node.op == "Const" and len(node.attr["value"].tensor.tensor_content) >= threshold:
            expected_constants[f"meta_graphs[0].graph_def.node[{k}].attr['value'].tensor.tensor_content"] = node
    for j, function in enumerate(graph.library.function):
        for k, node in enumerate(function.node_def):
            if node.op == "Const" and len(node.attr["value"].tensor.tensor_content) >= threshold:
                expected_constants[f"meta_graphs[0].graph_def.library.function[{j}].node_def[{k}]"
                                   f".attr['value'].tensor.tensor_content"] = node
    assert len(expected_constants) >= 3  # captured constant, table, ones(500) in the functions
    bytes_paths = {path for path, indices in by_path.items()
                   if metadata.chunks[indices[0]].type == BYTES}
    assert bytes_paths == set(expected_constants)
    for path, node in expected_constants.items():
        (index,) = by_path[path]
        assert chunks[index] == node.attr["value"].tensor.tensor_content

    # Node runs are GraphDefs at graph_def holding the nodes in order, content stripped.
    node_chunks = by_path["meta_graphs[0].graph_def"]
    names = [n.name for i in node_chunks for n in graph_pb2.GraphDef.FromString(chunks[i]).node]
    assert names == [n.name for n in graph.node]
    assert len(node_chunks) > 1
    for i in node_chunks:
        part = graph_pb2.GraphDef.FromString(chunks[i])
        assert len(chunks[i]) <= max_chunk_size or len(part.node) == 1
        for node in part.node:
            if node.op == "Const" and node.attr["value"].tensor.dtype == types_pb2.DT_FLOAT:
                tensor = node.attr["value"].tensor
                assert tensor.tensor_shape.dim or tensor.float_val or tensor.tensor_content

    # Function runs are FunctionDefLibrary chunks at graph_def.library, in order.
    library_chunks = by_path["meta_graphs[0].graph_def.library"]
    functions = [f.signature.name for i in library_chunks
                 for f in function_pb2.FunctionDefLibrary.FromString(chunks[i]).function]
    assert functions == [f.signature.name for f in graph.library.function]
    for i in library_chunks:
        part = function_pb2.FunctionDefLibrary.FromString(chunks[i])
        assert len(chunks[i]) <= max_chunk_size or len(part.function) == 1

    # Functions too big for one chunk have their node_def lists in FunctionDef chunks.
    body_paths = [p for p in by_path if p.endswith("]") and ".library.function[" in p and "node_def" not in p]
    assert body_paths, "the small threshold must split at least one function body"
    for path in body_paths:
        j = int(path.rsplit("[", 1)[1][:-1])
        nodes = [n.name for i in by_path[path] for n in function_pb2.FunctionDef.FromString(chunks[i]).node_def]
        assert nodes == [n.name for n in graph.library.function[j].node_def]


def test_graph_def_root_uses_empty_paths():
    graph = graph_pb2.GraphDef()
    for i in range(40):
        graph.node.add(name=f"n{i}", op="Identity", input=[f"n{i - 1}"] if i else [])
    graph.node.append(const_node("weights", np.arange(500)))
    graph.library.function.add().signature.name = "f"
    graph.versions.producer = 1234
    chunks, metadata = splitter.split(graph, 300)
    tags = [list(f.field_tag) for f in metadata.message.chunked_fields]
    assert [] in tags  # node runs merge into the GraphDef itself
    merged = merger.merge(chunks, metadata, graph_pb2.GraphDef)
    assert canonical(merged) == canonical(graph)


def test_constant_values_outside_tensor_content_stay_in_node():
    graph = graph_pb2.GraphDef()
    node = graph.node.add(name="splat", op="Const")
    tensor = node.attr["value"].tensor
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=100000)
    tensor.float_val.append(1.0)  # a splat: shape is large, proto is tiny
    for i in range(30):
        graph.node.add(name=f"pad{i}", op="NoOp")
    chunks, metadata = splitter.split(graph, 200)
    assert all(info.type == MESSAGE for info in metadata.chunks)
    assert canonical(merger.merge(chunks, metadata, graph_pb2.GraphDef)) == canonical(graph)


def test_oversized_single_node_gets_its_own_chunk():
    graph = graph_pb2.GraphDef()
    graph.node.add(name="small", op="NoOp")
    big = graph.node.add(name="big", op="Placeholder")
    big.attr["note"].s = b"x" * 5000  # not a constant: cannot be split further
    graph.node.add(name="after", op="NoOp")
    chunks, metadata = splitter.split(graph, 1000)
    sizes = sorted(len(c) for c in chunks)
    assert sizes[-1] > 5000
    big_chunks = [graph_pb2.GraphDef.FromString(c) for c in chunks if len(c) > 5000]
    assert [n.name for n in big_chunks[0].node] == ["big"]
    assert canonical(merger.merge(chunks, metadata, graph_pb2.GraphDef)) == canonical(graph)


def test_node_past_protobuf_limit_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(splitter, "PROTOBUF_LIMIT", 4000)
    graph = graph_pb2.GraphDef()
    node = graph.node.add(name="huge_strings", op="Const")
    node.attr["value"].tensor.string_val.extend([b"y" * 1000] * 5)
    graph.node.add(name="other", op="NoOp").attr["pad"].s = b"z" * 200
    with pytest.raises(SplitError, match="huge_strings.*only a tensor_content constant"):
        splitter.split(graph, 1000)


def test_rejects_bad_max_chunk_size():
    with pytest.raises(ValueError, match="max_chunk_size"):
        splitter.split(graph_pb2.GraphDef(), 0)
    with pytest.raises(ValueError, match="max_chunk_size"):
        splitter.split(graph_pb2.GraphDef(), 1 << 31)


def test_plan_produces_chunks_lazily():
    graph = graph_pb2.GraphDef()
    graph.node.append(const_node("a", np.arange(1000)))
    graph.node.append(const_node("b", np.arange(2000)))
    plan = splitter.plan_split(graph, 1000)
    produced = plan.iter_data()
    first_chunk, first = next(produced)
    assert first_chunk is plan.chunks[0]
    # Producing reads the constant at that moment, so a later change shows up.
    graph.node[1].attr["value"].tensor.tensor_content = b"\0" * 8000
    rest = [data for _, data in produced]
    assert b"\0" * 8000 in rest


# ---- property test: random graphs with functions and constants round-trip ----

_names = st.text(alphabet="abcdefgh_", min_size=1, max_size=8)


@st.composite
def node_defs(draw, prefix: str):
    nodes = []
    for k in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            shape = draw(st.lists(st.integers(0, 40), min_size=0, max_size=2))
            node = const_node(f"{prefix}c{k}", np.random.default_rng(k).random(shape))
        else:
            node = node_def_pb2.NodeDef(name=f"{prefix}{draw(_names)}{k}", op=draw(st.sampled_from(
                ["Identity", "AddV2", "NoOp"])))
            node.input.extend(draw(st.lists(_names, max_size=3)))
            if draw(st.booleans()):
                node.attr["T"].type = types_pb2.DT_FLOAT
        nodes.append(node)
    return nodes


@st.composite
def graph_defs(draw):
    graph = graph_pb2.GraphDef()
    graph.node.extend(draw(node_defs("g")))
    for j in range(draw(st.integers(0, 4))):
        function = graph.library.function.add()
        function.signature.name = f"fn{j}"
        function.node_def.extend(draw(node_defs(f"f{j}")))
        if draw(st.booleans()):
            function.ret["out"] = "x:0"
    if draw(st.booleans()):
        graph.library.gradient.add(function_name="fn0", gradient_func="fn1")
    graph.versions.producer = draw(st.integers(0, 2000))
    return graph


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graph_defs(), max_chunk_size=st.integers(50, 5000), in_saved_model=st.booleans())
def test_random_graphs_round_trip(graph, max_chunk_size, in_saved_model):
    if in_saved_model:
        message = saved_model_pb2.SavedModel(saved_model_schema_version=1)
        message.meta_graphs.add().graph_def.CopyFrom(graph)
        message.meta_graphs[0].meta_info_def.tags.append("serve")
        if graph.versions.producer % 2:  # TF1-style second meta graph
            second = message.meta_graphs.add()
            second.graph_def.CopyFrom(graph)
            second.meta_info_def.tags.append("train")
    else:
        message = graph
    before = canonical(message)
    chunks, metadata = splitter.split(message, max_chunk_size)
    merged = merger.merge(chunks, metadata, type(message))
    assert canonical(merged) == before
    assert canonical(message) == before
    for info, data in zip(metadata.chunks, chunks):
        assert info.size == len(data)


def test_copy_without_keeps_every_other_field_exactly():
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto(intra_op_parallelism_threads=3, allow_soft_placement=True)
    config.gpu_options.per_process_gpu_memory_fraction = -0.0  # written despite being "zero"
    config.device_count["CPU"] = 2
    config.experimental.collective_group_leader = "leader"
    assert canonical(splitter.copy_without(config, {})) == canonical(config)
    without = splitter.copy_without(config, {"device_count": True, "experimental": {
        "collective_group_leader": True}})
    assert not without.device_count and without.HasField("experimental")
    assert without.gpu_options == config.gpu_options
    assert without.intra_op_parallelism_threads == 3


def test_fields_unknown_to_our_schema_survive_the_round_trip():
    """A SavedModel from a newer TensorFlow may carry fields we do not know."""
    extra = b"\xf8\x07\x05" + b"\xfa\x07\x03abc" + b"\xfd\x07\x01\x02\x03\x04" + b"\xfb\x07\x08\x01\xfc\x07"
    graph = graph_pb2.GraphDef()
    node = const_node("weights", np.arange(400))
    node.attr["value"].tensor.MergeFromString(extra)  # inside the stripped TensorProto
    node.MergeFromString(extra)
    graph.node.append(node)
    for i in range(20):
        graph.node.add(name=f"n{i}", op="NoOp")
    graph.MergeFromString(extra)
    saved_model = saved_model_pb2.SavedModel()
    saved_model.meta_graphs.add().graph_def.CopyFrom(graph)
    saved_model.meta_graphs[0].MergeFromString(extra)
    saved_model.MergeFromString(extra)
    chunks, metadata = splitter.split(saved_model, 300)
    assert any(info.type == BYTES for info in metadata.chunks)
    merged = merger.merge(chunks, metadata, saved_model_pb2.SavedModel)
    assert canonical(merged) == canonical(saved_model)
