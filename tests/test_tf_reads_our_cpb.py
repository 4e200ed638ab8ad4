"""TensorFlow's own C++ Riegeli reader (fingerprinting) reads .cpb files from our writer."""
from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")  # a declared dependency; present in every environment
from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2  # noqa: E402
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting  # noqa: E402

from tf_bigexport.imageformat.proto import chunk_pb2  # noqa: E402
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError  # noqa: E402

# meta_graphs[0].graph_def.node[i]: SavedModel.meta_graphs = 2, MetaGraphDef.graph_def = 2,
# GraphDef.node = 1.
NODE_PATH = ((("field", 2), ("index", 0), ("field", 2), ("field", 1)))


class Adder(tf.Module):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return x * self.v + 1.0


@pytest.fixture(scope="module")
def plain_save(tmp_path_factory) -> str:
    export_dir = str(tmp_path_factory.mktemp("plain") / "model")
    tf.saved_model.save(Adder(), export_dir)
    return export_dir


def write_chunked(plain_dir: str, out_dir: str, compression: str) -> list[int]:
    """saved_model.cpb: root SavedModel without graph nodes, one record per node,
    ChunkMetadata last.  Returns the record positions."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(plain_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    nodes = [n.SerializeToString() for n in saved_model.meta_graphs[0].graph_def.node]
    assert len(nodes) > 3
    del saved_model.meta_graphs[0].graph_def.node[:]
    records = [saved_model.SerializeToString()] + nodes

    os.makedirs(out_dir)
    shutil.copytree(os.path.join(plain_dir, "variables"), os.path.join(out_dir, "variables"))
    metadata = chunk_pb2.ChunkMetadata()
    metadata.message.chunk_index = 0
    with RecordWriter(os.path.join(out_dir, "saved_model.cpb"), compression=compression,
                      chunk_size=1 << 20 if compression == "brotli" else 1) as writer:
        positions = [writer.write_record(r) for r in records]
        for pos, record in zip(positions, records):
            metadata.chunks.add(type=chunk_pb2.ChunkInfo.MESSAGE, size=len(record), offset=pos)
        for i in range(len(nodes)):
            field = metadata.message.chunked_fields.add()
            for kind, value in NODE_PATH + (("index", i),):
                setattr(field.field_tag.add(), kind, value)
            field.message.chunk_index = i + 1
        writer.write_record(metadata.SerializeToString())
    return positions


def fingerprint(export_dir: str) -> fingerprint_pb2.FingerprintDef:
    fp = fingerprint_pb2.FingerprintDef()
    fp.ParseFromString(fingerprinting.CreateFingerprintDef(export_dir))
    return fp


@pytest.mark.parametrize("compression", ["none", "brotli"])
def test_tensorflow_reads_our_cpb(plain_save, tmp_path, compression):
    out_dir = str(tmp_path / "chunked")
    positions = write_chunked(plain_save, out_dir, compression)
    cpb = os.path.join(out_dir, "saved_model.cpb")
    with RecordReader(cpb) as reader:
        read_back = list(reader.records_with_positions())
        metadata = chunk_pb2.ChunkMetadata.FromString(reader.read_last_record())
    assert [pos for pos, _ in read_back[:-1]] == positions
    assert [c.offset for c in metadata.chunks] == positions
    if compression == "brotli":  # all records share one chunk: consecutive positions
        assert positions == list(range(positions[0], positions[0] + len(positions)))
    else:  # one chunk per record
        assert all(b - a > 40 for a, b in zip(positions, positions[1:]))

    fp = fingerprint(out_dir)
    assert fp.saved_model_checksum != 0
    assert fp.graph_def_program_hash != 0
    assert fp.checkpoint_hash == fingerprint(plain_save).checkpoint_hash


@pytest.mark.parametrize("compression", ["none", "brotli"])
def test_tensorflow_rejects_corrupted_copy(plain_save, tmp_path, compression):
    out_dir = str(tmp_path / "chunked")
    write_chunked(plain_save, out_dir, compression)
    cpb = os.path.join(out_dir, "saved_model.cpb")
    with open(cpb, "r+b") as f:
        f.seek(os.path.getsize(cpb) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(Exception) as tf_error:
        fingerprint(out_dir)
    message = str(tf_error.value)
    assert "Corrupted Riegeli/records file" in message and "hash mismatch" in message
    with pytest.raises(RiegeliError) as ours:
        with RecordReader(cpb) as reader:
            list(reader)
    assert ours.value.path == cpb and ours.value.offset is not None
