"""saved_model.cpb files: TensorFlow reads what we write, we read it back exactly,
and damaged files give clear errors."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

from tf_bigexport.imageformat import chunked, splitter
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.proto import chunk_pb2
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter
from saved_model_cases import copy_without_program, saved_case, serving_outputs

COMPARED_HASHES = ("graph_def_program_hash", "signature_def_hash", "checkpoint_hash")


def canonical(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def tensorflow_fingerprint(directory: str) -> fingerprint_pb2.FingerprintDef:
    """TensorFlow's C++ reads the directory (its own Riegeli reader and merger for .cpb)."""
    return fingerprint_pb2.FingerprintDef.FromString(fingerprinting.CreateFingerprintDef(directory))


def write_cpb(case_name: str, directory: str, max_chunk_size: int, **kwargs) -> str:
    case = saved_case(case_name)
    copy_without_program(case.directory, directory)
    return chunked.write_saved_model_proto(case.proto(), directory, max_chunk_size=max_chunk_size, **kwargs)


@pytest.mark.parametrize("case_name, max_chunk_size", [
    ("calculator", 300), ("calculator", 4000), ("keras", 1000)])
def test_tensorflow_reads_our_cpb_and_merged_proto_loads(tmp_path, case_name, max_chunk_size):
    case = saved_case(case_name)
    original = case.proto()
    cpb_dir = str(tmp_path / "cpb")
    written = write_cpb(case_name, cpb_dir, max_chunk_size)
    assert written == os.path.join(cpb_dir, "saved_model.cpb")
    assert not os.path.exists(os.path.join(cpb_dir, "saved_model.pb"))

    # TensorFlow's own reader accepts the file (and its layout differs from a .pb's by design).
    cpb_fingerprint = tensorflow_fingerprint(cpb_dir)
    original_fingerprint = tensorflow_fingerprint(case.directory)
    assert cpb_fingerprint.checkpoint_hash == original_fingerprint.checkpoint_hash
    assert cpb_fingerprint.saved_model_checksum != original_fingerprint.saved_model_checksum

    merged = chunked.read_saved_model(cpb_dir)
    assert canonical(merged) == canonical(original)

    # The merged proto as a plain .pb: stock TensorFlow loads it, same outputs, same hashes.
    plain_dir = copy_without_program(case.directory, str(tmp_path / "plain"))
    with open(os.path.join(plain_dir, "saved_model.pb"), "wb") as f:
        f.write(canonical(merged))
    outputs = serving_outputs(plain_dir, case.inputs)
    reference = serving_outputs(case.directory, case.inputs)  # TensorFlow's own save, loaded
    assert outputs.keys() == reference.keys() == case.expected.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(outputs[key], value)
        np.testing.assert_allclose(outputs[key], case.expected[key], rtol=1e-5, atol=1e-6)
    plain_fingerprint = tensorflow_fingerprint(plain_dir)
    for name in COMPARED_HASHES:
        assert getattr(plain_fingerprint, name) == getattr(original_fingerprint, name), name


@pytest.mark.parametrize("compression", ["zstd", "brotli"])
def test_compressed_cpb_is_read_by_tensorflow_and_by_us(tmp_path, compression):
    directory = str(tmp_path / compression)
    write_cpb("calculator", directory, 2000, compression=compression)
    tensorflow_fingerprint(directory)
    assert canonical(chunked.read_saved_model(directory)) == canonical(saved_case("calculator").proto())


def test_small_model_is_written_as_plain_pb_and_stale_files_go(tmp_path):
    case = saved_case("keras")
    directory = str(tmp_path / "model")
    assert write_cpb("keras", directory, 1000).endswith("saved_model.cpb")
    written = chunked.write_saved_model_proto(case.proto(), directory)
    assert written == os.path.join(directory, "saved_model.pb")
    assert not os.path.exists(os.path.join(directory, "saved_model.cpb"))
    with open(written, "rb") as f:
        assert f.read() == canonical(case.proto())
    assert chunked.write_saved_model_proto(case.proto(), directory, max_chunk_size=1000).endswith(".cpb")
    assert not os.path.exists(os.path.join(directory, "saved_model.pb"))
    assert sorted(n for n in os.listdir(directory) if n.startswith(".")) == []  # no temporaries left


def test_read_prefers_plain_pb_then_pbtxt(tmp_path):
    case = saved_case("keras")
    directory = str(tmp_path / "model")
    write_cpb("keras", directory, 1000)
    from google.protobuf import text_format
    tagged = case.proto()
    tagged.meta_graphs[0].meta_info_def.tags.append("from-pbtxt")
    with open(os.path.join(directory, "saved_model.pbtxt"), "w") as f:
        f.write(text_format.MessageToString(tagged))
    assert "from-pbtxt" in chunked.read_saved_model(directory).meta_graphs[0].meta_info_def.tags
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        chunked.read_saved_model(str(tmp_path / "missing"))


def test_skip_large_constants_reads_structure_only(tmp_path):
    directory = str(tmp_path / "model")
    write_cpb("calculator", directory, 1000)
    full = chunked.read_saved_model(directory)
    light = chunked.read_saved_model(directory, skip_large_constants=True)
    assert light.meta_graphs[0].signature_def == full.meta_graphs[0].signature_def
    assert [n.name for n in light.meta_graphs[0].graph_def.node] == [
        n.name for n in full.meta_graphs[0].graph_def.node]
    assert len(canonical(light)) < len(canonical(full)) - 12000


def test_write_chunked_to_a_file_object_matches_split():
    original = saved_case("calculator").proto()
    buffer = io.BytesIO()
    metadata = chunked.write_chunked(buffer, splitter.plan_split(original, 1500))
    chunks, expected = splitter.split(original, 1500)
    assert metadata.message == expected.message
    buffer.seek(0)
    with RecordReader(buffer, name="in-memory") as reader:
        records = list(reader)
    assert records[:-1] == chunks
    assert chunk_pb2.ChunkMetadata.FromString(records[-1]) == metadata


# ---- damaged files ----

@pytest.fixture(scope="module")
def cpb_bytes(tmp_path_factory) -> bytes:
    directory = str(tmp_path_factory.mktemp("damaged") / "model")
    with open(write_cpb("calculator", directory, 2000), "rb") as f:
        return f.read()


def _write(tmp_path, data: bytes) -> str:
    directory = tmp_path / "model"
    directory.mkdir(exist_ok=True)
    (directory / "saved_model.cpb").write_bytes(data)
    return str(directory)


def test_truncated_file(tmp_path, cpb_bytes):
    for cut in (len(cpb_bytes) - 7, len(cpb_bytes) // 2, 70, 10):
        directory = _write(tmp_path, cpb_bytes[:cut])
        with pytest.raises(ChunkedFormatError) as info:
            chunked.read_saved_model(directory)
        assert str(info.value).startswith(os.path.join(directory, "saved_model.cpb") + ": ")


def test_not_a_riegeli_file(tmp_path):
    directory = _write(tmp_path, canonical(saved_case("keras").proto()))
    with pytest.raises(ChunkedFormatError, match="saved_model.cpb: not a Riegeli/records file"):
        chunked.read_saved_model(directory)


def _rewrite_with_metadata(tmp_path, cpb_bytes, edit) -> str:
    """Copies the records of ``cpb_bytes`` into a new file with edited metadata."""
    with RecordReader(io.BytesIO(cpb_bytes)) as reader:
        records = list(reader)
    metadata = chunk_pb2.ChunkMetadata.FromString(records[-1])
    edit(metadata)
    path = tmp_path / "edited"
    path.mkdir()
    with RecordWriter(str(path / "saved_model.cpb")) as writer:
        for record in records[:-1]:
            writer.write_record(record)
        writer.write_record(metadata.SerializeToString())
    return str(path)


def test_metadata_pointing_outside_the_file(tmp_path, cpb_bytes):
    def edit(metadata):
        metadata.chunks[1].offset = 10 * len(cpb_bytes)
    directory = _rewrite_with_metadata(tmp_path, cpb_bytes, edit)
    with pytest.raises(ChunkedFormatError, match=r"saved_model.cpb: chunk 1 \(record position \d+\)"):
        chunked.read_saved_model(directory)


def test_metadata_with_wrong_size(tmp_path, cpb_bytes):
    def edit(metadata):
        metadata.chunks[2].size += 1
    directory = _rewrite_with_metadata(tmp_path, cpb_bytes, edit)
    with pytest.raises(ChunkedFormatError, match="chunk 2 .* bytes but the metadata says"):
        chunked.read_saved_model(directory)


def test_metadata_with_bad_path(tmp_path, cpb_bytes):
    def edit(metadata):
        metadata.message.chunked_fields[0].field_tag[0].field = 77
    directory = _rewrite_with_metadata(tmp_path, cpb_bytes, edit)
    with pytest.raises(ChunkedFormatError, match="saved_model.cpb: bad field path .* no field number 77"):
        chunked.read_saved_model(directory)


def test_last_record_not_metadata(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    with RecordWriter(str(path / "saved_model.cpb")) as writer:
        writer.write_record(b"\xff\xff\xff\xff not a proto")
    with pytest.raises(ChunkedFormatError, match="last record is not a ChunkMetadata"):
        chunked.read_saved_model(str(path))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_flipped_bytes_never_pass_silently(tmp_path, cpb_bytes, data):
    damaged = bytearray(cpb_bytes)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] ^= data.draw(st.integers(1, 255))
    directory = _write(tmp_path, bytes(damaged))
    try:
        merged = chunked.read_saved_model(directory)
    except ChunkedFormatError as e:
        assert str(e).startswith(os.path.join(directory, "saved_model.cpb"))
    else:  # only flips in padding that Riegeli does not hash may go unnoticed
        assert canonical(merged) == canonical(saved_case("calculator").proto())


def test_same_input_gives_identical_files(tmp_path):
    """Retried exports must produce byte-identical files (same checksums)."""
    first = write_cpb("calculator", str(tmp_path / "a"), 700)
    second = write_cpb("calculator", str(tmp_path / "b"), 700)
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()


# ---- past 2 GiB (run with `make test-slow`) ----

def _max_rss_bytes() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.slow
def test_saved_model_past_2gib(tmp_path):
    """Three 750 MiB constants: the proto can never be serialized whole (2.25 GiB)."""
    from tensorflow.core.framework import types_pb2

    size = 750 << 20
    original = saved_model_pb2.SavedModel(saved_model_schema_version=1)
    meta_graph = original.meta_graphs.add()
    meta_graph.meta_info_def.tags.append("serve")
    content = bytearray(size)
    for i in range(3):
        content[:8] = bytes([i + 1]) * 8
        node = meta_graph.graph_def.node.add(name=f"weights{i}", op="Const")
        node.attr["dtype"].type = types_pb2.DT_FLOAT
        tensor = node.attr["value"].tensor
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=size // 4)
        tensor.tensor_content = bytes(content)
        meta_graph.graph_def.node.add(name=f"read{i}", op="Identity", input=[f"weights{i}"])
    del content
    directory = str(tmp_path / "big")

    rss_before = _max_rss_bytes()
    written = chunked.write_saved_model_proto(original, directory)
    # Chunks are made one at a time: at most about one constant's copy on top of the
    # message (serializing it whole would add 2.25 GiB).
    assert _max_rss_bytes() - rss_before < size + (256 << 20)
    assert written.endswith("saved_model.cpb")
    assert os.path.getsize(written) > 3 * size

    tensorflow_fingerprint(directory)  # TensorFlow's reader hashes every chunk

    structure = chunked.read_saved_model(directory, skip_large_constants=True)
    assert [n.name for n in structure.meta_graphs[0].graph_def.node] == [
        n.name for n in meta_graph.graph_def.node]
    del structure

    merged = chunked.read_saved_model(directory)
    for ours, theirs in zip(merged.meta_graphs[0].graph_def.node, meta_graph.graph_def.node):
        assert ours.name == theirs.name
        assert ours.attr["value"].tensor.tensor_content == theirs.attr["value"].tensor.tensor_content
        ours_stripped = splitter.copy_without(ours, {"attr": {"value": {"tensor": {"tensor_content": True}}}})
        theirs_stripped = splitter.copy_without(theirs, {"attr": {"value": {"tensor": {"tensor_content": True}}}})
        assert canonical(ours_stripped) == canonical(theirs_stripped)
    assert len(merged.meta_graphs[0].graph_def.node) == 6


# ---- hostile metadata in an intact Riegeli file ----

@pytest.fixture(scope="module")
def calculator_records(cpb_bytes) -> list[bytes]:
    with RecordReader(io.BytesIO(cpb_bytes)) as reader:
        return list(reader)


def _edit_metadata(data, metadata: chunk_pb2.ChunkMetadata) -> None:
    """Applies a few random structural edits an attacker or a bug could make."""
    fields = [metadata.message]
    for cm in fields:
        fields.extend(f.message for f in cm.chunked_fields)
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["offset", "size", "type", "chunk_index", "tag", "tag_kind",
                                          "duplicate", "drop_root", "drop_tag"]))
        info = metadata.chunks[data.draw(st.integers(0, len(metadata.chunks) - 1))]
        cm = data.draw(st.sampled_from(fields))
        field = (cm.chunked_fields[data.draw(st.integers(0, len(cm.chunked_fields) - 1))]
                 if cm.chunked_fields else None)
        big = st.one_of(st.integers(0, 70), st.integers(0, (1 << 64) - 1))
        if what == "offset":
            info.offset = data.draw(big)
        elif what == "size":
            info.size = data.draw(big)
        elif what == "type":
            info.type = data.draw(st.integers(0, 2))
        elif what == "chunk_index":
            cm.chunk_index = data.draw(big)
        elif what == "drop_root":
            metadata.message.ClearField("chunk_index")
        elif field is not None and field.field_tag:
            tag = field.field_tag[data.draw(st.integers(0, len(field.field_tag) - 1))]
            if what == "tag":
                tag.field = data.draw(st.integers(0, 12))
            elif what == "tag_kind":
                tag.index = data.draw(big)
            elif what == "duplicate":
                cm.chunked_fields.append(field)
            elif what == "drop_tag":
                del field.field_tag[-1]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_metadata_gives_clear_errors(calculator_records, data):
    metadata = chunk_pb2.ChunkMetadata.FromString(calculator_records[-1])
    if data.draw(st.booleans()):
        _edit_metadata(data, metadata)
        raw = metadata.SerializeToString()
    else:
        raw = bytearray(calculator_records[-1])
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    buffer = io.BytesIO()
    with RecordWriter(buffer) as writer:
        for record in calculator_records[:-1]:
            writer.write_record(record)
        writer.write_record(bytes(raw))
    buffer.seek(0)
    try:
        chunked.read_chunked(buffer, saved_model_pb2.SavedModel)
    except ChunkedFormatError as e:  # anything else (IndexError, crash, hang) fails the test
        assert str(e).startswith("<stream>: ") and e.problem


def test_unknown_compression_is_refused_even_for_small_models(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        chunked.write_saved_model_proto(saved_case("keras").proto(), str(tmp_path), compression="lz77")
    assert not os.listdir(tmp_path)
