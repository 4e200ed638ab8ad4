"""Corrupt, truncated and hostile files: always RiegeliError, never a wrong record."""
from __future__ import annotations

import io
import os
import time

import brotli
import pytest
import zstandard

from tf_bigexport.imageformat.highwayhash import hash64
from tf_bigexport.imageformat.riegeli import FILE_SIGNATURE, RecordReader, RecordWriter, RiegeliError
from tf_bigexport.imageformat.riegeli.chunk_header import SIMPLE, TRANSPOSED, ChunkHeader
from tf_bigexport.imageformat.riegeli.layout import (
    BLOCK_HEADER_SIZE,
    BLOCK_SIZE,
    CHUNK_HEADER_SIZE,
    add_with_overhead,
    chunk_end,
    encode_block_header,
    physical_runs,
)
from tf_bigexport.imageformat.riegeli.varint import encode_varint


def write_sample(compression: str, sizes: list[list[int]]) -> tuple[bytes, list[bytes], list[int]]:
    """A file with one chunk per inner list of record sizes."""
    out = io.BytesIO()
    records, positions = [], []
    with RecordWriter(out, compression=compression, chunk_size=1 << 30) as writer:
        for group in sizes:
            for size in group:
                record = os.urandom(size // 2) + bytes(size - size // 2)
                records.append(record)
                positions.append(writer.write_record(record))
            writer.flush()
    return out.getvalue(), records, positions


def chunk_layout(data: bytes) -> list[tuple[int, int, int]]:
    """(chunk begin, padding begin, chunk end) of every chunk, read from a good file."""
    chunks = []
    pos = 0
    while pos < len(data):
        header = bytearray()
        for kind, at, length in physical_runs(pos, 0, CHUNK_HEADER_SIZE):
            if kind == "data":
                header += data[at:at + length]
        data_size = int.from_bytes(header[8:16], "little")
        num_records = int.from_bytes(header[24:32], "little") >> 8
        end = chunk_end(pos, data_size, num_records)
        chunks.append((pos, add_with_overhead(pos, CHUNK_HEADER_SIZE + data_size), end))
        pos = end
    assert pos == len(data)
    return chunks


def outcome(data: bytes, positions: list[int]) -> dict:
    """What each read API returns on ``data``: a value, or the RiegeliError."""
    result = {}

    def attempt(key, fn):
        try:
            result[key] = fn()
        except RiegeliError as exc:
            assert exc.path == "sample.riegeli" and str(exc).startswith("sample.riegeli: ")
            result[key] = exc

    def with_reader(fn):
        with RecordReader(io.BytesIO(data), name="sample.riegeli") as reader:
            return fn(reader)

    attempt("all", lambda: with_reader(lambda r: list(r)))
    attempt("last", lambda: with_reader(lambda r: r.read_last_record()))
    for pos in positions:
        attempt(pos, lambda pos=pos: with_reader(lambda r: r.read_record_at(pos)))
    return result


def assert_never_wrong(data: bytes, records: list[bytes], positions: list[int]) -> dict:
    got = outcome(data, positions)
    for pos, record in zip(positions, records):
        assert isinstance(got[pos], RiegeliError) or got[pos] == record
    assert isinstance(got["last"], RiegeliError) or got["last"] == records[-1]
    assert isinstance(got["all"], RiegeliError) or got["all"] == records
    return got


def flipped(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1:]


def in_padding(pos: int, chunks) -> bool:
    return any(padding <= pos < end for _, padding, end in chunks)


def test_every_byte_flip_of_a_small_file():
    data, records, positions = write_sample("none", [[10, 100, 0], [200], [1, 2, 3]])
    chunks = chunk_layout(data)
    for pos in range(len(data)):
        for mask in (0x01, 0x80):
            got = assert_never_wrong(flipped(data, pos, mask), records, positions)
            if not in_padding(pos, chunks):
                assert isinstance(got["all"], RiegeliError), f"flip at {pos} went unnoticed"


def multi_block_sample(compression: str):
    return write_sample(compression, [[70_000], [5, 0, 300], [140_000, 10], [BLOCK_SIZE - 100], [3]])


def interesting_positions(data: bytes, chunks) -> set[int]:
    positions = set(range(64))
    for block in range(0, len(data), BLOCK_SIZE):
        positions.update(range(block, min(block + BLOCK_HEADER_SIZE, len(data))))
    for begin, padding, end in chunks:
        for kind, at, length in physical_runs(begin, 0, CHUNK_HEADER_SIZE):
            positions.update(range(at, at + length))
        positions.update(range(max(padding - 16, begin), min(padding + 16, end)))
    positions.update(range(0, len(data), 1009))
    return {p for p in positions if p < len(data)}


@pytest.mark.parametrize("compression", ["none", "zstd", "brotli"])
def test_byte_flips_in_every_header_and_across_blocks(compression):
    data, records, positions = multi_block_sample(compression)
    chunks = chunk_layout(data)
    assert len(data) > 3 * BLOCK_SIZE if compression == "none" else len(data) > BLOCK_SIZE
    for pos in sorted(interesting_positions(data, chunks)):
        got = assert_never_wrong(flipped(data, pos), records, positions)
        if not in_padding(pos, chunks):
            assert isinstance(got["all"], RiegeliError), f"flip at {pos} went unnoticed"
            assert got["all"].offset is not None


@pytest.mark.parametrize("compression", ["none", "brotli"])
def test_truncation_anywhere(compression):
    data, records, positions = multi_block_sample(compression)
    chunks = chunk_layout(data)
    boundaries = {end for _, _, end in chunks}
    cuts = set(range(0, 200)) | set(range(0, len(data), 997))
    for _, padding, end in chunks:
        cuts.update(range(max(padding - 3, 0), min(padding + 3, len(data))))
        cuts.update(range(max(end - 3, 0), min(end + 3, len(data))))
    for block in range(BLOCK_SIZE, len(data), BLOCK_SIZE):
        cuts.update(range(block - 2, block + BLOCK_HEADER_SIZE + 3))
    for cut in sorted(c for c in cuts if c < len(data)):
        got = assert_never_wrong_prefix(data[:cut], records, positions)
        if cut not in boundaries:
            assert isinstance(got, RiegeliError), f"truncation at {cut} went unnoticed"


def assert_never_wrong_prefix(data: bytes, records: list[bytes], positions: list[int]):
    """A file cut at a chunk boundary is a valid shorter file; anything else is an error."""
    try:
        with RecordReader(io.BytesIO(data), name="sample.riegeli") as reader:
            got = list(reader)
            assert got == records[:len(got)]
            try:
                last = reader.read_last_record()
            except RiegeliError:
                assert not got
            else:
                assert got and last == got[-1]
            for pos, record in zip(positions, records):
                try:
                    assert reader.read_record_at(pos) == record
                except RiegeliError:
                    pass
            return got
    except RiegeliError as exc:
        assert exc.path == "sample.riegeli"
        return exc


# -- hostile files: headers with valid hashes but absurd contents ------------

def forged(header: ChunkHeader, data: bytes = b"", pad_to: int | None = None) -> bytes:
    body = FILE_SIGNATURE + header.encode() + data
    if pad_to is not None:
        body += bytes(pad_to - len(body))
    return body


def read_all(data: bytes, **kwargs):
    with RecordReader(io.BytesIO(data), name="hostile", **kwargs) as reader:
        return list(reader)


def simple_data(compression: int, sizes_block: bytes, values_block: bytes) -> bytes:
    return bytes([compression]) + encode_varint(len(sizes_block)) + sizes_block + values_block


@pytest.mark.parametrize("field,value", [
    ("data_size", 1 << 62), ("data_size", (1 << 64) - 1), ("num_records", (1 << 56) - 1),
])
def test_forged_sizes_fail_fast_without_allocating(field, value):
    fields = dict(data_size=10, data_hash=hash64(bytes(10)), chunk_type=SIMPLE, num_records=1,
                  decoded_data_size=5)
    fields[field] = value
    data = forged(ChunkHeader(**fields), bytes(10))
    started = time.perf_counter()
    with pytest.raises(RiegeliError, match="truncated") as exc:
        read_all(data)
    assert time.perf_counter() - started < 5
    assert exc.value.offset == 64


def test_decoded_size_out_of_proportion_is_refused():
    values = bytes(1 << 20)
    block = encode_varint(len(values)) + zstandard.ZstdCompressor().compress(values)
    raw_sizes = encode_varint(len(values))
    sizes = encode_varint(len(raw_sizes)) + zstandard.ZstdCompressor().compress(raw_sizes)
    payload = simple_data(ord("z"), sizes, block)
    header = ChunkHeader(len(payload), hash64(payload), SIMPLE, 1, len(values))
    data = forged(header, payload)
    assert read_all(data) == [values]  # legitimate at the default cap
    with pytest.raises(RiegeliError, match="more than 100x"):
        read_all(data, max_expansion=100)


def test_decompression_bomb_stops_at_the_declared_size():
    bomb = brotli.compress(bytes(64 << 20), quality=5)  # 64 MiB of zeros in a few hundred bytes
    declared = 1000
    raw_sizes = encode_varint(declared)
    sizes = encode_varint(len(raw_sizes)) + brotli.compress(raw_sizes)
    payload = simple_data(ord("b"), sizes, encode_varint(declared) + bomb)
    header = ChunkHeader(len(payload), hash64(payload), SIMPLE, 1, declared)
    started = time.perf_counter()
    with pytest.raises(RiegeliError, match="decompress"):
        read_all(forged(header, payload))
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("payload,message", [
    (simple_data(0, encode_varint(3), b"abc"), "sum to 3"),
    (simple_data(0, encode_varint(5), b"abcd"), "exceed the chunk's decoded_data_size"),
    (bytes([0]) + encode_varint(1000) + b"\x05abcde", "record sizes claim 1000 bytes"),
    (simple_data(0, encode_varint(3) + encode_varint(1), b"abcd"), "stray bytes"),
    (simple_data(ord("x"), b"\x01", b"x"), "unsupported compression"),
    (simple_data(ord("s"), b"\x01\x02", b"garbage!"), "snappy"),
    (simple_data(ord("z"), b"\x01\x02", b"garbage!"), "zstd"),
    (simple_data(ord("b"), b"\x01\x02", b"garbage!"), "brotli"),
])
def test_inconsistent_simple_chunks(payload, message):
    header = ChunkHeader(len(payload), hash64(payload), SIMPLE, 1, 4)
    with pytest.raises(RiegeliError, match=message) as exc:
        read_all(forged(header, payload))
    assert exc.value.offset == 64


def test_bad_transposed_and_unknown_record_chunks_are_refused():
    payload = b"\x00" * 8
    for chunk_type, message in [(TRANSPOSED, "transposed chunk"), (0x01, "unknown chunk type 0x01 with 1 records")]:
        header = ChunkHeader(len(payload), hash64(payload), chunk_type, 1, 4)
        with pytest.raises(RiegeliError, match=message):
            read_all(forged(header, payload))


def test_unknown_chunk_types_without_records_are_skipped():
    """As Riegeli's own reader does: a later writer's recordless chunks do not hide the records."""
    out = io.BytesIO()
    writer = RecordWriter(out)
    first = writer.write_record(b"one")
    writer.flush()
    writer._write_chunk(ord("Q"), 0, 0, [b"future metadata"])
    second = writer.write_record(b"two")
    writer.close()
    with RecordReader(io.BytesIO(out.getvalue())) as reader:
        assert list(reader.records_with_positions()) == [(first, b"one"), (second, b"two")]
        assert reader.read_last_record() == b"two"


def test_forged_block_header_for_seek_is_refused():
    data, records, positions = write_sample("none", [[10], [200_000], [20]])
    target = positions[2]
    block = target - target % BLOCK_SIZE
    # Valid hash, but it points at a "chunk" that is not there.
    bad = data[:block] + encode_block_header(100, 200) + data[block + BLOCK_HEADER_SIZE:]
    with RecordReader(io.BytesIO(bad), name="hostile") as reader:
        with pytest.raises(RiegeliError) as exc:
            reader.read_record_at(target)
        assert exc.value.offset is not None
        with pytest.raises(RiegeliError):
            reader.read_last_record()


@pytest.mark.parametrize("content,message", [
    (b"", "too short"), (b"\x00" * 10, "too short"), (os.urandom(500), "signature"),
    (FILE_SIGNATURE[:24] + os.urandom(100), "signature"),
])
def test_not_a_riegeli_file(content, message):
    with pytest.raises(RiegeliError, match=message) as exc:
        RecordReader(io.BytesIO(content), name="junk.bin")
    assert exc.value.path == "junk.bin"


def test_missing_file_and_positions_without_records(tmp_path):
    with pytest.raises(RiegeliError, match="cannot open"):
        RecordReader(tmp_path / "absent")
    path = tmp_path / "f"
    with RecordWriter(path) as writer:
        pos = writer.write_record(b"abc")
    with RecordReader(path) as reader:
        for bad in (0, 63, pos + 1, 10**9):
            with pytest.raises(RiegeliError, match="no record at position") as exc:
                reader.read_record_at(bad)
            assert exc.value.path == str(path) and exc.value.offset == bad


def test_error_attributes_and_message():
    exc = RiegeliError("f.cpb", 123, "chunk header hash mismatch")
    assert (exc.path, exc.offset, exc.reason) == ("f.cpb", 123, "chunk header hash mismatch")
    assert str(exc) == "f.cpb: at byte 123: chunk header hash mismatch"
    assert isinstance(exc, ValueError)
    import pickle
    again = pickle.loads(pickle.dumps(exc))
    assert (again.path, again.offset, again.reason) == (exc.path, exc.offset, exc.reason)


def test_big_records_read_in_place_are_still_fully_checked(tmp_path):
    """Records big enough to be read straight into their bytes objects, with
    hashing on a helper thread: damage anywhere is still an error."""
    big = os.urandom(9 << 20)
    path = tmp_path / "big"
    with RecordWriter(path) as writer:
        positions = [writer.write_record(b"head"), writer.write_record(big), writer.write_record(b"x")]
    data = path.read_bytes()
    begin = positions[1]
    damaged_at = [begin + 3,  # chunk header
                  begin + CHUNK_HEADER_SIZE + 2,  # record sizes
                  begin + (5 << 20) + 7,  # record bytes
                  (begin // BLOCK_SIZE + 40) * BLOCK_SIZE + 9,  # a block header inside the record
                  len(data) - 70]  # the record's last bytes
    for pos in damaged_at:
        bad = tmp_path / f"bad{pos}"
        bad.write_bytes(flipped(data, pos))
        with RecordReader(bad) as reader:
            with pytest.raises(RiegeliError) as exc:
                reader.read_record_at(begin)
            assert exc.value.path == str(bad)
            with pytest.raises(RiegeliError):
                list(reader)
    cut = tmp_path / "cut"
    cut.write_bytes(data[:begin + (4 << 20)])
    with RecordReader(cut) as reader:
        with pytest.raises(RiegeliError, match="truncated"):
            reader.read_record_at(begin)
