"""The 40-byte chunk header and the chunk types."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from tf_bigexport.imageformat.highwayhash import hash64

SIGNATURE = ord("s")
METADATA = ord("m")
PADDING = ord("p")
SIMPLE = ord("r")
TRANSPOSED = ord("t")

_BODY = struct.Struct("<QQQQ")  # data_size, data_hash, type|num_records<<8, decoded_data_size
_MAX_NUM_RECORDS = (1 << 56) - 1


@dataclass(frozen=True)
class ChunkHeader:
    data_size: int
    data_hash: int
    chunk_type: int
    num_records: int
    decoded_data_size: int

    def encode(self) -> bytes:
        if not 0 <= self.num_records <= _MAX_NUM_RECORDS:
            raise ValueError(f"num_records out of range: {self.num_records}")
        body = _BODY.pack(
            self.data_size,
            self.data_hash,
            self.chunk_type | (self.num_records << 8),
            self.decoded_data_size,
        )
        return struct.pack("<Q", hash64(body)) + body


def decode_chunk_header(raw: bytes | bytearray | memoryview) -> tuple[ChunkHeader, bool]:
    """The header fields and whether its header_hash matches."""
    (stored_hash,) = struct.unpack_from("<Q", raw, 0)
    body = bytes(raw[8:40])
    data_size, data_hash, type_and_count, decoded = _BODY.unpack(body)
    header = ChunkHeader(data_size, data_hash, type_and_count & 0xFF, type_and_count >> 8, decoded)
    return header, stored_hash == hash64(body)


def describe_chunk_type(chunk_type: int) -> str:
    if 0x20 < chunk_type < 0x7F:
        return f"'{chr(chunk_type)}' (0x{chunk_type:02x})"
    return f"0x{chunk_type:02x}"


#: A signature chunk header; it makes the first 64 bytes of every file fixed.
SIGNATURE_HEADER = ChunkHeader(0, hash64(b""), SIGNATURE, 0, 0)
