"""Round trips through RecordWriter and RecordReader (property-based and big records)."""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tf_bigexport.imageformat._bytesfiller import BytesFiller
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError
from tf_bigexport.imageformat.riegeli.chunk_header import METADATA, PADDING, SIGNATURE
from tf_bigexport.imageformat.riegeli.hashing import OVERLAP_THRESHOLD
from tf_bigexport.imageformat.riegeli.layout import BLOCK_SIZE

COMPRESSIONS = ["none", "zstd", "brotli"]

record_sizes = st.one_of(
    st.integers(0, 300),
    st.integers(BLOCK_SIZE - 200, BLOCK_SIZE + 200),  # straddle a block boundary
    st.integers(BLOCK_SIZE + 1, 3 * BLOCK_SIZE),  # more than a block
)


def make_record(size: int, seed: int) -> bytes:
    # Compressible but not constant, so compressed chunks still span blocks.
    unit = bytes((seed * 31 + i * 7) % 251 for i in range(97))
    return (unit * (size // len(unit) + 1))[:size]


def check_file(src, records: list[bytes], positions: list[int]) -> None:
    with RecordReader(src) as reader:
        assert list(reader.records_with_positions()) == list(zip(positions, records))
        for pos, record in reversed(list(zip(positions, records))):
            assert reader.read_record_at(pos) == record
        if records:
            assert reader.read_last_record() == records[-1]
        else:
            with pytest.raises(RiegeliError, match="no records"):
                reader.read_last_record()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(record_sizes, max_size=12), compression=st.sampled_from(COMPRESSIONS),
       chunk_size=st.sampled_from([1, 500, 70_000, 1 << 20]),
       flush_after=st.sets(st.integers(0, 11)))
def test_round_trip(sizes, compression, chunk_size, flush_after):
    records = [make_record(size, i) for i, size in enumerate(sizes)]
    out = io.BytesIO()
    with RecordWriter(out, compression=compression, chunk_size=chunk_size) as writer:
        positions = []
        for i, record in enumerate(records):
            positions.append(writer.write_record(record))
            if i in flush_after:
                writer.flush()
    assert positions == sorted(set(positions))
    check_file(io.BytesIO(out.getvalue()), records, positions)


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(record_sizes, min_size=1, max_size=6), compression=st.sampled_from(COMPRESSIONS))
def test_path_and_file_object_writes_are_identical(sizes, compression):
    records = [make_record(size, i) for i, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "records")
        with RecordWriter(path, compression=compression) as writer:
            positions = [writer.write_record(r) for r in records]
        out = io.BytesIO()
        with RecordWriter(out, compression=compression) as writer:
            assert [writer.write_record(r) for r in records] == positions
        with open(path, "rb") as f:
            assert f.read() == out.getvalue()
        # A file the caller opened (written through its descriptor), after a prefix.
        with open(path + ".opened", "wb") as f:
            f.write(b"prefix")
            with RecordWriter(f, compression=compression) as writer:
                assert [writer.write_record(r) for r in records] == positions
            assert f.tell() == 6 + len(out.getvalue())
            f.write(b"after")
        with open(path + ".opened", "rb") as f:
            assert f.read() == b"prefix" + out.getvalue() + b"after"
        check_file(path, records, positions)
        with open(path, "rb") as f:
            check_file(f, records, positions)


def test_many_records_per_chunk_have_consecutive_positions():
    records = [str(i).encode() * (i % 5) for i in range(5000)]
    out = io.BytesIO()
    with RecordWriter(out, compression="brotli") as writer:
        positions = [writer.write_record(r) for r in records]
    assert positions == list(range(64, 64 + len(records)))
    check_file(io.BytesIO(out.getvalue()), records, positions)


class NotSeekable(io.RawIOBase):
    """A write-only stream without seek: the writer must hash before writing."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += b
        return len(b)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_big_records_stream_through_the_fast_paths(tmp_path, compression):
    """Records past the threshold where hashing moves to a helper thread and
    uncompressed records are read straight into their bytes objects."""
    big = os.urandom(OVERLAP_THRESHOLD + 3 * BLOCK_SIZE + 5)
    records = [b"small", big, b"", big[:300_000], b"tail"]
    path = tmp_path / "big"
    with RecordWriter(path, compression=compression, chunk_size=100_000) as writer:
        positions = [writer.write_record(r) for r in records]
    check_file(str(path), records, positions)
    stream = NotSeekable()
    with RecordWriter(stream, compression=compression, chunk_size=100_000) as writer:
        assert [writer.write_record(r) for r in records] == positions
    assert bytes(stream.data) == path.read_bytes()
    with RecordReader(path) as reader:
        got = reader.read_record_at(positions[1])
        assert type(got) is bytes and got == big


def test_reader_skips_padding_metadata_and_extra_signature_chunks():
    out = io.BytesIO()
    writer = RecordWriter(out)
    first = writer.write_record(b"one")
    writer.flush()
    # Chunks other writers may emit; written with the writer's own chunk machinery.
    writer._write_chunk(PADDING, 0, 0, [bytes(BLOCK_SIZE + 100)])
    writer._write_chunk(METADATA, 0, 7, [b"\x00\x01\x02metadata"])
    writer._write_chunk(SIGNATURE, 0, 0, [])
    second = writer.write_record(b"two")
    writer.flush()
    writer._write_chunk(PADDING, 0, 0, [bytes(10)])
    # The last record is then blocks before the end: read_last_record steps back.
    writer._write_chunk(PADDING, 0, 0, [bytes(3 * BLOCK_SIZE)])
    writer.close()
    assert len(out.getvalue()) > second + 3 * BLOCK_SIZE
    check_file(io.BytesIO(out.getvalue()), [b"one", b"two"], [first, second])


def test_writer_refuses_bad_arguments_and_use_after_close(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        RecordWriter(io.BytesIO(), compression="snappy")
    with pytest.raises(ValueError, match="chunk_size"):
        RecordWriter(io.BytesIO(), chunk_size=0)
    writer = RecordWriter(tmp_path / "x")
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write_record(b"late")


class CountingReads(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n
        return n


def test_seek_and_last_record_read_little_of_a_big_file():
    out = io.BytesIO()
    with RecordWriter(out, chunk_size=2000) as writer:
        positions = [writer.write_record(make_record(300, i)) for i in range(4000)]
    data = out.getvalue()
    assert len(data) > 18 * BLOCK_SIZE
    src = CountingReads(data)
    with RecordReader(src) as reader:
        src.bytes_read = 0
        assert reader.read_last_record() == make_record(300, 3999)
        assert src.bytes_read < 2 * BLOCK_SIZE
        src.bytes_read = 0
        assert reader.read_record_at(positions[2345]) == make_record(300, 2345)
        assert src.bytes_read < 2 * BLOCK_SIZE


def test_short_writes_are_resumed(tmp_path, monkeypatch):
    """writev may write less than asked (signals, quotas, pipes): nothing is lost."""
    from tf_bigexport.imageformat.riegeli import fileio

    real_writev = os.writev

    def stingy_writev(fd, buffers):
        first = memoryview(buffers[0]).cast("B")
        if len(first) > 7:  # write part of the first buffer only
            return real_writev(fd, [first[:len(first) // 2 + 1]])
        return real_writev(fd, buffers[:3])

    records = [make_record(size, i) for i, size in enumerate([5, 70_000, 0, 3 << 20, 12])]
    reference = io.BytesIO()
    with RecordWriter(reference, chunk_size=100_000) as writer:
        positions = [writer.write_record(r) for r in records]
    monkeypatch.setattr(fileio.os, "writev", stingy_writev)
    path = tmp_path / "short"
    with RecordWriter(path, chunk_size=100_000) as writer:
        assert [writer.write_record(r) for r in records] == positions
    assert path.read_bytes() == reference.getvalue()


def _large_record(size: int) -> bytes:
    """Compressible but varied bytes (compression ratios like a real proto's), made fast."""
    rng = np.random.default_rng(size)
    return rng.integers(0, 16, size // 8 + 1, dtype=np.uint8).repeat(8)[:size].tobytes()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_records_of_64_mib_and_more_round_trip(tmp_path, compression):
    """Issue 13.4: brotli records of 64 MiB written by our writer came back as
    "stream is truncated"; every compression must read back what it wrote."""
    record = _large_record(64 << 20)
    path = tmp_path / "big"
    with RecordWriter(path, compression=compression) as writer:
        positions = [writer.write_record(b"before"), writer.write_record(record), writer.write_record(b"after")]
    with RecordReader(path) as reader:
        assert reader.read_record_at(positions[1]) == record
        assert [len(r) for r in reader] == [6, len(record), 5]


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 300_000), piece=st.sampled_from([1 << 12, 1 << 14, 65_521]),
       compression=st.sampled_from(["zstd", "brotli"]))
def test_decompression_in_many_pieces(size, piece, compression):
    """The 64 MiB path above with small output pieces: the decoder is resumed
    many times, at every kind of boundary, for plausible and implausible sizes."""
    from tf_bigexport.imageformat.riegeli import compression as codec
    record = _large_record(size)
    out = io.BytesIO()
    with RecordWriter(out, compression=compression) as writer:
        writer.write_record(record)
    saved = codec._PIECE
    codec._PIECE = piece
    try:
        assert list(RecordReader(io.BytesIO(out.getvalue()))) == [record]
    finally:
        codec._PIECE = saved


def test_bytes_filler_hands_out_bytes_once_no_view_remains():
    filler = BytesFiller(10)
    view = memoryview(filler)
    view[:] = b"0123456789"
    with pytest.raises(BufferError):
        filler.take()
    view.release()
    out = filler.take()
    assert type(out) is bytes and out == b"0123456789"
    with pytest.raises(BufferError):
        filler.take()
