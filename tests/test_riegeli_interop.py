"""Files Google's C++ Riegeli writes (issue 13.10), read by our reader.

The writer is the `array-record` wheel (tests/riegeli_interop.py): simple and transposed
chunks, every compression Riegeli has (snappy included), zstd and brotli with large windows,
and array-record's own footer chunk and postscript after the records. Records are real
protos (graph nodes with varints, fixed64s, strings and submessages), non-proto bytes, empty
records and records of several blocks.
"""
from __future__ import annotations

import io
import os

import pytest
import zstandard

from riegeli_interop import write_records
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError
from tf_bigexport.imageformat.riegeli.chunk_header import TRANSPOSED
from tf_bigexport.imageformat.riegeli.varint import encode_varint

COMPRESSIONS = ["uncompressed", "brotli:6", "zstd:3", "snappy", "brotli:6,window_log:30", "zstd:3,window_log:30"]


def _records() -> list[bytes]:
    from tensorflow.core.framework import graph_pb2, node_def_pb2
    from tensorflow.core.protobuf import saved_model_pb2
    graph = graph_pb2.GraphDef()
    for i in range(40):
        node = graph.node.add(name=f"layer_{i}/kernel", op="Const" if i % 3 else "MatMul",
                              input=[f"layer_{i - 1}/out"] * (i % 4), device="/cpu:0" * (i % 2))
        node.attr["dtype"].type = 1 + i % 9
        node.attr["value"].tensor.tensor_shape.dim.add(size=i * 1000 + 7)
        node.attr["value"].tensor.int64_val.extend(range(-i, i * 300, 17))  # varints of every length
        node.attr["value"].tensor.double_val.extend([0.5 * i, -1e300])  # fixed64
        node.attr["scale"].f = i / 7  # fixed32
        node.attr["list"].list.i.extend([1 << (i % 63), -(1 << (i % 62))])
    nodes = [n.SerializeToString() for n in graph.node]
    model = saved_model_pb2.SavedModel()
    model.meta_graphs.add().graph_def.CopyFrom(graph)
    return (nodes + [b"", b"not a proto \xff\xfe", node_def_pb2.NodeDef().SerializeToString(),
                     model.SerializeToString(), os.urandom(150_000), bytes(70_000)])


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return _records()


@pytest.mark.parametrize("transpose", [False, True], ids=["simple", "transposed"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_reads_what_googles_riegeli_writes(tmp_path, records, compression, transpose):
    path = tmp_path / "records"
    write_records(path, records, f"group_size:9,transpose:{str(transpose).lower()},{compression}")
    with RecordReader(path) as reader:
        read = list(reader.records_with_positions())
        chunk_types = {reader._chunk_containing(position).header.chunk_type for position, _ in read[:5]}
        assert [r for _, r in read][:len(records)] == records
        # Random access by numeric position, and the file's last record (array-record's postscript).
        for position, record in reversed(read):
            assert reader.read_record_at(position) == record
        assert reader.read_last_record() == read[-1][1]
    assert len(read) > len(records)  # the footer and postscript records follow ours
    assert (TRANSPOSED in chunk_types) == transpose


def test_zstd_frames_with_windows_above_zstds_default_limit():
    """Riegeli writes zstd frames with window_log up to 31 (30 even for small chunks, as the
    simple/transposed x window_log:30 cases above show); zstd's decoder refuses windows past
    2**27 unless told. Here a frame of our own making, without content size."""
    payload = os.urandom(3000) * 50
    params = zstandard.ZstdCompressionParameters(window_log=30, compression_level=3, write_content_size=False)
    stream = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(stream, closefd=False) as writer:
        writer.write(payload)
    frame = stream.getvalue()
    with pytest.raises(zstandard.ZstdError, match="memory|window"):
        zstandard.ZstdDecompressor().decompress(frame, max_output_size=len(payload))
    assert list(RecordReader(io.BytesIO(_zstd_chunk_file(payload, frame)))) == [payload]


def _zstd_chunk_file(payload: bytes, frame: bytes) -> bytes:
    """A Riegeli file of one zstd chunk whose values block is ``frame``."""
    from tf_bigexport.imageformat.riegeli.chunk_header import SIMPLE
    out = io.BytesIO()
    with RecordWriter(out) as writer:
        sizes = encode_varint(len(payload))
        sizes_block = encode_varint(len(sizes)) + zstandard.ZstdCompressor().compress(sizes)
        data = [bytes([ord("z")]) + encode_varint(len(sizes_block)) + sizes_block,
                encode_varint(len(payload)) + frame]
        writer._write_chunk(SIMPLE, 1, len(payload), data)
    return out.getvalue()


def test_snappy_stream_must_match_the_declared_size(tmp_path):
    import cramjam
    payload = b"snappy " * 1000
    out = io.BytesIO()
    from tf_bigexport.imageformat.riegeli.chunk_header import SIMPLE
    with RecordWriter(out) as writer:
        sizes = encode_varint(len(payload) + 1)
        sizes_block = encode_varint(len(sizes)) + bytes(cramjam.snappy.compress_raw(sizes))
        stream = bytes(cramjam.snappy.compress_raw(payload))
        # Declared one byte more than the stream holds: refused, not padded or over-read.
        writer._write_chunk(SIMPLE, 1, len(payload) + 1,
                            [bytes([ord("s")]) + encode_varint(len(sizes_block)) + sizes_block,
                             encode_varint(len(payload) + 1) + stream])
    with pytest.raises(RiegeliError, match="snappy"):
        list(RecordReader(io.BytesIO(out.getvalue())))


@pytest.mark.slow
def test_large_zstd_and_brotli_windows_from_googles_riegeli(tmp_path):
    """A 200 MB chunk written with window_log 30: zstd needs a window past 2**27 to decode it."""
    record = os.urandom(1 << 20) * 200
    for compression in ("zstd:1,window_log:30", "brotli:1,window_log:30"):
        path = tmp_path / compression.replace(":", "_").replace(",", "-")
        write_records(path, [record, b"tail"], f"group_size:2,{compression}")
        with RecordReader(path) as reader:
            assert next(iter(reader)) == record
