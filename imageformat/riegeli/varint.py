"""Unsigned LEB128 varints (Riegeli's varint64)."""
from __future__ import annotations

MAX_VARINT64_BYTES = 10


def encode_varint(value: int) -> bytes:
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint64 out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if ``buf`` holds no valid varint64 at ``pos``."""
    result = 0
    shift = 0
    end = min(len(buf), pos + MAX_VARINT64_BYTES)
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result, pos) if result < 1 << 64 else None
        shift += 7
    return None
