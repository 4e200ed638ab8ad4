"""Where bytes sit in a Riegeli/records file.

A file is a sequence of chunks (40-byte header, data, zero padding); every
64 KiB boundary carries a 24-byte block header that interrupts whatever chunk
crosses it.  "Logical" offsets count a chunk's header+data bytes only;
"physical" offsets are file positions, block headers included.  Formulas follow
the "Implementation notes" of Riegeli's file format specification.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from tf_bigexport.imageformat.highwayhash import hash64_rows

BLOCK_SIZE = 1 << 16
BLOCK_HEADER_SIZE = 24
USABLE_BLOCK_SIZE = BLOCK_SIZE - BLOCK_HEADER_SIZE
CHUNK_HEADER_SIZE = 40


def add_with_overhead(pos: int, size: int) -> int:
    """Physical position reached after ``size`` logical bytes starting at ``pos``."""
    overhead_blocks = (size + (pos + USABLE_BLOCK_SIZE - 1) % BLOCK_SIZE) // USABLE_BLOCK_SIZE
    return pos + size + overhead_blocks * BLOCK_HEADER_SIZE


def round_up_to_possible_chunk_boundary(pos: int) -> int:
    remaining_in_block = (-pos) % BLOCK_SIZE
    return pos + max(remaining_in_block - (USABLE_BLOCK_SIZE - 1), 0)


def chunk_end(chunk_begin: int, data_size: int, num_records: int) -> int:
    """End of a chunk: header+data with block headers, padded so that it
    spans at least ``num_records`` bytes and does not end inside or right
    after a block header."""
    return max(
        add_with_overhead(chunk_begin, CHUNK_HEADER_SIZE + data_size),
        round_up_to_possible_chunk_boundary(chunk_begin + num_records),
    )


def is_possible_chunk_boundary(pos: int) -> bool:
    return round_up_to_possible_chunk_boundary(pos) == pos


def block_headers_for_chunk(chunk_begin: int, chunk_end_pos: int) -> bytes:
    """The 24-byte block headers of every block boundary inside the chunk, in
    order: (hash, block - chunk_begin, chunk_end - block) each."""
    blocks = np.arange(
        -(-chunk_begin // BLOCK_SIZE) * BLOCK_SIZE, chunk_end_pos, BLOCK_SIZE, dtype=np.uint64
    )
    if blocks.size == 0:
        return b""
    table = np.empty((blocks.size, 3), dtype="<u8")
    table[:, 1] = blocks - np.uint64(chunk_begin)
    table[:, 2] = np.uint64(chunk_end_pos) - blocks
    table[:, 0] = np.frombuffer(hash64_rows(np.ascontiguousarray(table[:, 1:]), 16), dtype="<u8")
    return table.tobytes()


def encode_block_header(previous_chunk: int, next_chunk: int) -> bytes:
    body = struct.pack("<QQ", previous_chunk, next_chunk)
    return hash64_rows(body, 16) + body


def block_header_is_plausible(previous_chunk: int, next_chunk: int, block_begin: int) -> bool:
    """The spec's constraints on block header distances (beyond the hash)."""
    return (
        previous_chunk % BLOCK_SIZE < USABLE_BLOCK_SIZE
        and previous_chunk <= block_begin
        and next_chunk > 0
        and (next_chunk - 1) % BLOCK_SIZE >= BLOCK_HEADER_SIZE
    )


def physical_runs(chunk_begin: int, logical_begin: int, logical_end: int) -> Iterator[tuple[str, int, int]]:
    """Split logical bytes [logical_begin, logical_end) of the chunk starting at
    ``chunk_begin`` into the contiguous physical range that holds them:
    yields ("data", physical_pos, length) and ("block", physical_pos, 24) in
    file order.  A block header right before logical_begin is included; one
    right after logical_end is not (it belongs to whatever follows)."""
    pos = add_with_overhead(chunk_begin, logical_begin)
    remaining = logical_end - logical_begin
    while remaining > 0:
        if pos % BLOCK_SIZE == 0:
            yield ("block", pos, BLOCK_HEADER_SIZE)
            pos += BLOCK_HEADER_SIZE
        n = min(remaining, BLOCK_SIZE - pos % BLOCK_SIZE)
        yield ("data", pos, n)
        pos += n
        remaining -= n


def padding_runs(padding_begin: int, chunk_end_pos: int) -> Iterator[tuple[str, int, int]]:
    """Physical runs of the padding [padding_begin, chunk_end), block headers included."""
    pos = padding_begin
    while pos < chunk_end_pos:
        if pos % BLOCK_SIZE == 0:
            yield ("block", pos, BLOCK_HEADER_SIZE)
            pos += BLOCK_HEADER_SIZE
            continue
        n = min(chunk_end_pos - pos, BLOCK_SIZE - pos % BLOCK_SIZE)
        yield ("padding", pos, n)
        pos += n
