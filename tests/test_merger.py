"""The merger: TensorFlow's merge semantics, and clear errors for malformed chunk trees."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tf_bigexport.imageformat import fieldpath, merger, splitter
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.proto import chunk_pb2
from saved_model_cases import saved_case

SM = saved_model_pb2.SavedModel.DESCRIPTOR
MESSAGE, BYTES = chunk_pb2.ChunkInfo.MESSAGE, chunk_pb2.ChunkInfo.BYTES


def canonical(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def path(*parts):
    return fieldpath.build(SM, parts)


def chunked_field(tags, chunk_index=None, **nested):
    cf = chunk_pb2.ChunkedField(field_tag=tags)
    if chunk_index is not None:
        cf.message.chunk_index = chunk_index
    for f in nested.get("fields", []):
        cf.message.chunked_fields.append(f)
    if "fields" in nested:
        cf.message.SetInParent()
    return cf


def metadata_for(chunks, types, fields, root_chunk=0):
    metadata = chunk_pb2.ChunkMetadata()
    for data, kind in zip(chunks, types):
        metadata.chunks.add(type=kind, size=len(data))
    if root_chunk is not None:
        metadata.message.chunk_index = root_chunk
    metadata.message.chunked_fields.extend(fields)
    return metadata


def small_saved_model() -> saved_model_pb2.SavedModel:
    sm = saved_model_pb2.SavedModel(saved_model_schema_version=1)
    mg = sm.meta_graphs.add()
    mg.meta_info_def.tags.append("serve")
    for i in range(6):
        node = mg.graph_def.node.add(name=f"n{i}", op="Const")
        node.attr["dtype"].type = types_pb2.DT_FLOAT
        tensor = node.attr["value"].tensor
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=10 + i)
        tensor.tensor_content = np.arange(10 + i, dtype=np.float32).tobytes()
    mg.graph_def.library.function.add().signature.name = "f0"
    mg.signature_def["serving_default"].method_name = "predict"
    return sm


def tensorflow_python_style_layout(sm):
    """Chunks laid out as TensorFlow's Python splitter does: the GraphDef chunk is
    inserted at index 1 but listed last, node runs and constants listed before it."""
    stripped = saved_model_pb2.SavedModel()
    stripped.CopyFrom(sm)
    graph = stripped.meta_graphs[0].graph_def
    contents = []
    for node in graph.node:
        contents.append(node.attr["value"].tensor.tensor_content)
        node.attr["value"].tensor.ClearField("tensor_content")
    first = graph_pb2.GraphDef()
    first.node.extend(graph.node[:2])
    first.library.CopyFrom(graph.library)
    second = graph_pb2.GraphDef()
    second.node.extend(graph.node[2:4])
    third = graph_pb2.GraphDef()
    third.node.extend(graph.node[4:])
    stripped.meta_graphs[0].ClearField("graph_def")
    chunks = [stripped.SerializeToString(), first.SerializeToString(),
              second.SerializeToString(), third.SerializeToString()] + contents
    types = [MESSAGE] * 4 + [BYTES] * len(contents)
    graph_path = path("meta_graphs", 0, "graph_def")
    fields = [chunked_field(path("meta_graphs", 0, "graph_def", "node", k, "attr", "value",
                                 "tensor", "tensor_content"), 4 + k) for k in reversed(range(6))]
    fields += [chunked_field(graph_path, 3), chunked_field(graph_path, 2), chunked_field(graph_path, 1)]
    return chunks, types, fields


def test_tensorflow_order_is_restored_from_any_listing():
    sm = small_saved_model()
    chunks, types, fields = tensorflow_python_style_layout(sm)
    merged = merger.merge(chunks, metadata_for(chunks, types, fields), saved_model_pb2.SavedModel)
    assert canonical(merged) == canonical(sm)


def test_message_chunks_may_be_message_objects():
    sm = small_saved_model()
    chunks, types, fields = tensorflow_python_style_layout(sm)
    objects = [saved_model_pb2.SavedModel.FromString(chunks[0])]
    objects += [graph_pb2.GraphDef.FromString(c) for c in chunks[1:4]] + chunks[4:]
    merged = merger.merge(objects, metadata_for(chunks, types, fields), saved_model_pb2.SavedModel)
    assert canonical(merged) == canonical(sm)


def test_nested_chunked_message_without_chunk_index():
    sm = small_saved_model()
    stripped = saved_model_pb2.SavedModel()
    stripped.CopyFrom(sm)
    stripped.meta_graphs[0].graph_def.ClearField("node")
    node_chunks = [n.SerializeToString() for n in sm.meta_graphs[0].graph_def.node]
    chunks = [stripped.SerializeToString()] + node_chunks
    graph_desc = graph_pb2.GraphDef.DESCRIPTOR
    # Relative paths under graph_def: node[i] for each chunk (indices append in order).
    nested = [chunked_field(fieldpath.build(graph_desc, ["node", i]), 1 + i) for i in range(6)]
    fields = [chunked_field(path("meta_graphs", 0, "graph_def"), fields=nested)]
    merged = merger.merge(chunks, metadata_for(chunks, [MESSAGE] * 7, fields), saved_model_pb2.SavedModel)
    assert canonical(merged) == canonical(sm)


def test_map_entries_are_created_by_key():
    sm = small_saved_model()
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["x"].name = "x:0"
    root = saved_model_pb2.SavedModel()
    root.CopyFrom(sm)
    chunks = [root.SerializeToString(), signature.SerializeToString()]
    fields = [chunked_field(path("meta_graphs", 0, "signature_def", "extra"), 1)]
    merged = merger.merge(chunks, metadata_for(chunks, [MESSAGE, MESSAGE], fields),
                          saved_model_pb2.SavedModel)
    assert merged.meta_graphs[0].signature_def["extra"] == signature
    assert merged.meta_graphs[0].signature_def["serving_default"].method_name == "predict"


def test_bytes_chunk_sets_a_string_field_and_repeated_element():
    root = small_saved_model()
    chunks = [root.SerializeToString(), "grüße".encode(), b"\x00\xff raw"]
    fields = [chunked_field(path("meta_graphs", 0, "graph_def", "node", 1, "name"), 1),
              chunked_field(path("meta_graphs", 0, "meta_info_def", "tags", 0), 2)]
    with pytest.raises(ChunkedFormatError, match="not UTF-8"):
        merger.merge(chunks, metadata_for(chunks, [MESSAGE, BYTES, BYTES], fields),
                     saved_model_pb2.SavedModel)
    chunks[2] = b"tag"
    merged = merger.merge(chunks, metadata_for(chunks, [MESSAGE, BYTES, BYTES], fields),
                          saved_model_pb2.SavedModel)
    assert merged.meta_graphs[0].graph_def.node[1].name == "grüße"
    assert list(merged.meta_graphs[0].meta_info_def.tags) == ["tag"]


def test_skip_large_constants_leaves_content_empty():
    original = saved_case("calculator").proto()
    chunks, metadata = splitter.split(original, 1000)
    skipped = merger.merge(chunks, metadata, saved_model_pb2.SavedModel, skip_large_constants=True)
    full = merger.merge(chunks, metadata, saved_model_pb2.SavedModel)
    assert canonical(full) == canonical(original)
    assert len(canonical(skipped)) < len(canonical(full)) - 12000
    for a, b in zip(skipped.meta_graphs[0].graph_def.node, full.meta_graphs[0].graph_def.node):
        if a.attr["value"].tensor.tensor_content != b.attr["value"].tensor.tensor_content:
            assert not a.attr["value"].tensor.tensor_content
            assert a.attr["value"].tensor.tensor_shape == b.attr["value"].tensor.tensor_shape
            b.attr["value"].tensor.ClearField("tensor_content")
        assert a == b


def test_merge_without_root_chunk_starts_empty():
    graph = graph_pb2.GraphDef()
    graph.node.add(name="a", op="NoOp")
    chunks = [graph.SerializeToString()]
    metadata = metadata_for(chunks, [MESSAGE], [chunked_field([], 0)], root_chunk=None)
    assert merger.merge(chunks, metadata, graph_pb2.GraphDef) == graph


# ---- malformed trees: each gives ChunkedFormatError naming the problem ----

def _two_chunk_case(fields, types=(MESSAGE, MESSAGE), chunk1=None):
    root = small_saved_model()
    chunks = [root.SerializeToString(), chunk1 if chunk1 is not None else graph_pb2.GraphDef().SerializeToString()]
    return chunks, metadata_for(chunks, list(types), fields)


@pytest.mark.parametrize("fields, types, expected", [
    ([chunked_field(path("meta_graphs", 0, "graph_def"), 7)], (MESSAGE, MESSAGE),
     "refers to chunk 7, but there are only 2 chunks"),
    ([chunked_field(path("meta_graphs", 0, "graph_def"), 0)], (MESSAGE, MESSAGE),
     "chunk 0 is used twice"),
    ([chunked_field(path("meta_graphs", 0, "graph_def"), 1),
      chunked_field(path("meta_graphs", 0, "graph_def"), 1)], (MESSAGE, MESSAGE),
     "chunk 1 is used twice"),
    ([chunked_field([chunk_pb2.FieldIndex(field=99)], 1)], (MESSAGE, MESSAGE),
     "tensorflow.SavedModel has no field number 99"),
    ([chunked_field([chunk_pb2.FieldIndex(field=1), chunk_pb2.FieldIndex(index=0)], 1)], (MESSAGE, MESSAGE),
     "index given for tensorflow.SavedModel.saved_model_schema_version, which is not repeated"),
    ([chunked_field([chunk_pb2.FieldIndex(field=2)], 1)], (MESSAGE, MESSAGE),
     "repeated field tensorflow.SavedModel.meta_graphs needs an index"),
    ([chunked_field(path("meta_graphs", 0) + [chunk_pb2.FieldIndex(field=2),
                                               chunk_pb2.FieldIndex(map_key={"s": "k"})], 1)],
     (MESSAGE, MESSAGE), "map key given for tensorflow.MetaGraphDef.graph_def, which is not a map"),
    ([chunked_field(path("meta_graphs", 0) + [chunk_pb2.FieldIndex(field=5),
                                               chunk_pb2.FieldIndex(map_key={"i32": 3})], 1)],
     (MESSAGE, MESSAGE), "has string keys, got a i32 key"),
    ([chunked_field([chunk_pb2.FieldIndex(index=0)], 1)], (MESSAGE, MESSAGE),
     "an index at position 0 does not follow a field"),
    ([chunked_field(path("meta_graphs", 0, "graph_def"), 1)], (MESSAGE, BYTES),
     "chunk 1 is BYTES but .* needs MESSAGE"),
    ([chunked_field(path("meta_graphs", 0, "graph_def", "node", 0, "name"), 1)], (MESSAGE, MESSAGE),
     "chunk 1 is MESSAGE but .* needs BYTES"),
    ([chunked_field(path("saved_model_schema_version"), 1)], (MESSAGE, BYTES),
     "saved_model_schema_version is a scalar field"),
    ([chunked_field(path("meta_graphs", 0, "graph_def", "node", 0, "name"))], (MESSAGE, BYTES),
     "names no chunk"),
    ([chunked_field(path("meta_graphs", 0, "graph_def", "node", 0, "name"), 1,
                    fields=[chunked_field([], 0)])], (MESSAGE, BYTES),
     "has nested fields"),
    ([chunked_field(path("meta_graphs", 3, "graph_def"), 1)], (MESSAGE, MESSAGE),
     r"index 3 of meta_graphs is past its end \(1 elements\)"),
])
def test_malformed_trees_are_rejected(fields, types, expected):
    chunks, metadata = _two_chunk_case([], types)
    metadata.message.chunked_fields.extend(fields)
    with pytest.raises(ChunkedFormatError, match=expected):
        merger.merge(chunks, metadata, saved_model_pb2.SavedModel)


def test_path_past_a_leaf_is_rejected():
    tags = path("meta_graphs", 0, "graph_def", "node", 0, "name") + [chunk_pb2.FieldIndex(field=1)]
    chunks, metadata = _two_chunk_case([chunked_field(tags, 1)], (MESSAGE, BYTES))
    with pytest.raises(ChunkedFormatError, match="follows 'name', which is not a message"):
        merger.merge(chunks, metadata, saved_model_pb2.SavedModel)


def test_chunk_that_is_not_the_message_type():
    chunks, metadata = _two_chunk_case([chunked_field(path("meta_graphs", 0, "graph_def"), 1)],
                                       chunk1=b"\xff\xff\xff garbage")
    with pytest.raises(ChunkedFormatError, match=r"chunk 1 \(SavedModel.meta_graphs\[0\].graph_def\) "
                                                 r"is not a valid tensorflow.GraphDef"):
        merger.merge(chunks, metadata, saved_model_pb2.SavedModel)


def test_newer_join_version_is_refused():
    chunks, metadata = _two_chunk_case([])
    metadata.version.join_version = 1
    with pytest.raises(ChunkedFormatError, match="merger version 1"):
        merger.merge(chunks, metadata, saved_model_pb2.SavedModel)


def test_chunk_count_must_match_metadata():
    chunks, metadata = _two_chunk_case([])
    with pytest.raises(ChunkedFormatError, match="metadata lists 2 chunks but 1 were given"):
        merger.merge(chunks[:1], metadata, saved_model_pb2.SavedModel)


def test_nesting_deeper_than_protobuf_allows_is_rejected():
    # AttrValue.func.attr[key] is an AttrValue again: a schema that nests without end.
    root = chunk_pb2.ChunkedMessage()
    level = root
    attr_desc = attr_value_pb2.AttrValue.DESCRIPTOR
    for _ in range(120):
        cf = level.chunked_fields.add(field_tag=fieldpath.build(attr_desc, ["func", "attr", "a"]))
        level = cf.message
    with pytest.raises(ChunkedFormatError, match="nesting deeper than 100"):
        merger.merge([], root, attr_value_pb2.AttrValue)


def test_errors_name_the_source():
    chunks, metadata = _two_chunk_case([chunked_field(path("meta_graphs", 0, "graph_def"), 5)])
    source = merger.MemoryChunks(chunks, metadata.chunks, name="model-42/saved_model.cpb")
    with pytest.raises(ChunkedFormatError) as info:
        merger.merge(source, metadata, saved_model_pb2.SavedModel)
    assert str(info.value).startswith("model-42/saved_model.cpb: ")
    assert info.value.source == "model-42/saved_model.cpb"
    assert isinstance(info.value, ValueError)


def test_tensorflow_cpp_large_node_layout():
    """TensorFlow's C++ LargeNodeSplitter leaves an empty node in place and
    sends the node itself to a chunk at node[k]."""
    sm = small_saved_model()
    stripped = saved_model_pb2.SavedModel()
    stripped.CopyFrom(sm)
    graph = stripped.meta_graphs[0].graph_def
    big = node_def_pb2.NodeDef()
    big.CopyFrom(graph.node[3])
    graph.node[3].Clear()
    run = graph_pb2.GraphDef()
    run.node.extend(graph.node)
    graph.ClearField("node")
    chunks = [stripped.SerializeToString(), run.SerializeToString(), big.SerializeToString()]
    fields = [chunked_field(path("meta_graphs", 0, "graph_def", "node", 3), 2),
              chunked_field(path("meta_graphs", 0, "graph_def"), 1)]
    merged = merger.merge(chunks, metadata_for(chunks, [MESSAGE] * 3, fields), saved_model_pb2.SavedModel)
    assert canonical(merged) == canonical(sm)
