"""Known answers for the Riegeli/records layout: fixed file start, chunk ends, block headers."""
from __future__ import annotations

import io
import struct

import pytest

from tf_bigexport.imageformat.highwayhash import hash64
from tf_bigexport.imageformat.riegeli import FILE_SIGNATURE, RecordWriter
from tf_bigexport.imageformat.riegeli.layout import (
    BLOCK_SIZE,
    add_with_overhead,
    block_headers_for_chunk,
    chunk_end,
    round_up_to_possible_chunk_boundary,
)
from tf_bigexport.imageformat.riegeli.varint import decode_varint, encode_varint

# doc/riegeli_records_file_format.md, "File signature".
SPEC_FIRST_64 = bytes.fromhex(
    "83af70d10d884a3f 0000000000000000 4000000000000000 91bac23c9287e1a9"
    "0000000000000000 e19f13c0e9b1c372 7300000000000000 0000000000000000".replace(" ", ""))


def test_every_file_starts_with_the_spec_signature():
    assert FILE_SIGNATURE == SPEC_FIRST_64
    for compression in ("none", "zstd", "brotli"):
        out = io.BytesIO()
        with RecordWriter(out, compression=compression) as writer:
            writer.write_record(b"hello")
        assert out.getvalue()[:64] == SPEC_FIRST_64
    empty = io.BytesIO()
    RecordWriter(empty).close()
    assert empty.getvalue() == SPEC_FIRST_64


def test_round_up_to_possible_chunk_boundary_matches_the_spec_comment():
    # "0 -> 0, 1..25 -> 25, 26 -> 26, ..., 64K -> 64K, 64K+1..64K+25 -> 64K+25"
    assert round_up_to_possible_chunk_boundary(0) == 0
    assert {round_up_to_possible_chunk_boundary(p) for p in range(1, 26)} == {25}
    assert round_up_to_possible_chunk_boundary(26) == 26
    assert round_up_to_possible_chunk_boundary(BLOCK_SIZE) == BLOCK_SIZE
    assert {round_up_to_possible_chunk_boundary(BLOCK_SIZE + p) for p in range(1, 26)} == {BLOCK_SIZE + 25}


def test_chunk_end_examples():
    assert chunk_end(0, 0, 0) == 64  # signature: block header + chunk header
    assert chunk_end(64, 10, 1) == 114
    assert chunk_end(64, 0, 1000) == 1064  # padded to num_records bytes
    # Data ending exactly at a block boundary owns no block header there.
    assert chunk_end(64, BLOCK_SIZE - 64 - 40, 1) == BLOCK_SIZE
    assert chunk_end(64, BLOCK_SIZE - 64 - 40 + 1, 1) == BLOCK_SIZE + 25
    # Padding never ends right after a block header.
    assert chunk_end(BLOCK_SIZE - 40, 0, 64) == BLOCK_SIZE + 25
    assert add_with_overhead(BLOCK_SIZE, 1) == BLOCK_SIZE + 25


def test_block_headers_hash_their_distances():
    begin, end = 1000, 3 * BLOCK_SIZE + 500
    raw = block_headers_for_chunk(begin, end)
    assert len(raw) == 3 * 24
    for i, block in enumerate((BLOCK_SIZE, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE)):
        header_hash, previous_chunk, next_chunk = struct.unpack_from("<QQQ", raw, 24 * i)
        assert (previous_chunk, next_chunk) == (block - begin, end - block)
        assert header_hash == hash64(raw[24 * i + 8:24 * i + 24])


def test_block_headers_sit_at_every_boundary_of_a_written_file():
    out = io.BytesIO()
    with RecordWriter(out) as writer:
        first = writer.write_record(b"a" * 10)
        big = writer.write_record(bytes(range(256)) * 1200)  # below chunk_size: same chunk
        writer.flush()
        last = writer.write_record(b"z" * (3 * BLOCK_SIZE))
    data = out.getvalue()
    assert (first, big) == (64, 65)
    for block in range(BLOCK_SIZE, len(data), BLOCK_SIZE):
        header_hash, previous_chunk, next_chunk = struct.unpack_from("<QQQ", data, block)
        assert header_hash == hash64(data[block + 8:block + 24])
        chunk_begin = block - previous_chunk
        assert chunk_begin in (64, last)
        assert block + next_chunk <= len(data)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
def test_varint_round_trip(value):
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))
    assert decode_varint(encoded[:-1], 0) is None


def test_varint_rejects_overlong_and_overflowing():
    assert decode_varint(b"\x80" * 10 + b"\x01", 0) is None
    assert decode_varint(b"\xff" * 9 + b"\x02", 0) is None  # 2**64 does not fit
