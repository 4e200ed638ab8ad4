"""Data of a simple chunk ('r'): record sizes and values, maybe compressed.

    compression_type (1 byte) | varint64 len(sizes block) | sizes block | values block

The sizes block holds one varint64 per record; the values block the records
concatenated.  Both are compressed blocks (see compression.py).
"""
from __future__ import annotations

from tf_bigexport.imageformat.riegeli.compression import (
    DECODABLE,
    NONE,
    compress_block,
    compression_name,
    decompress_block,
)
from tf_bigexport.imageformat.riegeli.errors import ChunkFormatError
from tf_bigexport.imageformat.riegeli.varint import MAX_VARINT64_BYTES, decode_varint, encode_varint


def encode_prefix(compression: int, sizes_block: bytes) -> bytes:
    """Everything before the values block."""
    return bytes([compression]) + encode_varint(len(sizes_block)) + sizes_block


def encode_data(compression: int, level: int | None, sizes: bytes | bytearray,
                values: bytes | bytearray | memoryview) -> list[bytes | bytearray | memoryview]:
    """The chunk data as a list of buffers to write in order (not joined)."""
    if compression == NONE:
        return [encode_prefix(NONE, bytes(sizes)), values]
    return [encode_prefix(compression, b"".join(compress_block(compression, sizes, level))),
            *compress_block(compression, values, level)]


def parse_prefix(head, data_size: int, num_records: int) -> tuple[int, int, int]:
    """(compression type, offset of the sizes block, its length) from the first
    data bytes (``head``: up to 11 of them), checked against the data size."""
    if data_size < 2 or len(head) < 2:
        raise ChunkFormatError(f"simple chunk data of {data_size} bytes is too short")
    parsed = decode_varint(head, 1)
    if parsed is None:
        raise ChunkFormatError("bad varint for the size of the record sizes")
    sizes_len, sizes_at = parsed
    if sizes_len > data_size - sizes_at:
        raise ChunkFormatError(
            f"record sizes claim {sizes_len} bytes but only {data_size - sizes_at} remain in the chunk")
    if head[0] == NONE and sizes_len > num_records * MAX_VARINT64_BYTES:
        raise ChunkFormatError(f"{sizes_len} bytes of sizes for {num_records} records")
    return head[0], sizes_at, sizes_len


def split_prefix(data: memoryview, num_records: int) -> tuple[int, memoryview, int]:
    """(compression type, sizes block, offset of the values block)."""
    compression, sizes_at, sizes_len = parse_prefix(data[:1 + MAX_VARINT64_BYTES], len(data), num_records)
    return compression, data[sizes_at:sizes_at + sizes_len], sizes_at + sizes_len


def parse_sizes(sizes: bytes | bytearray | memoryview, num_records: int, decoded_data_size: int) -> list[int]:
    """The record sizes; they must fill the sizes buffer and sum to decoded_data_size."""
    out = []
    pos = 0
    total = 0
    for index in range(num_records):
        parsed = decode_varint(sizes, pos)
        if parsed is None:
            raise ChunkFormatError(f"bad or missing size of record {index} of {num_records}")
        size, pos = parsed
        total += size
        if total > decoded_data_size:
            raise ChunkFormatError(
                f"record sizes exceed the chunk's decoded_data_size {decoded_data_size}")
        out.append(size)
    if pos != len(sizes):
        raise ChunkFormatError(f"{len(sizes) - pos} stray bytes after the {num_records} record sizes")
    if total != decoded_data_size:
        raise ChunkFormatError(f"record sizes sum to {total}, header says {decoded_data_size}")
    return out


def decode_data(data: memoryview, num_records: int, decoded_data_size: int,
                max_expansion: int) -> list[bytes]:
    """All records of a simple chunk whose data hash was already checked;
    decompressed sizes are capped at ``max_expansion`` bytes per data byte."""
    compression, sizes_block, values_at = split_prefix(data, num_records)
    if compression not in DECODABLE:
        raise ChunkFormatError(f"unsupported compression type {compression_name(compression)}")
    max_sizes = min(num_records * MAX_VARINT64_BYTES, len(data) * max_expansion)
    sizes = decompress_block(compression, sizes_block, max_sizes)
    lengths = parse_sizes(sizes, num_records, decoded_data_size)
    values_block = data[values_at:]
    if compression == NONE:
        if len(values_block) != decoded_data_size:
            raise ChunkFormatError(
                f"values take {len(values_block)} bytes, header says {decoded_data_size}")
        values = values_block
    else:
        decoded = decompress_block(compression, values_block, decoded_data_size)
        if len(decoded) != decoded_data_size:
            raise ChunkFormatError(f"values decompress to {len(decoded)} bytes, header says {decoded_data_size}")
        if len(lengths) == 1 and isinstance(decoded, bytes):
            return [decoded]  # the decompressed buffer is the record: no copy
        values = memoryview(decoded)
    records = []
    pos = 0
    for size in lengths:
        records.append(bytes(values[pos:pos + size]))
        pos += size
    return records
