"""HighwayHash-64, the hash Riegeli puts in every block and chunk header.

Thin typed front of the native extension ``tf_bigexport.imageformat._highwayhash``: inputs
are any C-contiguous buffer (bytes, bytearray, memoryview, numpy arrays) and
are never copied; large inputs are hashed without holding the GIL.

The extension picks its AVX2 loop at import when the CPU has AVX2; set
``IMAGEFORMAT_HIGHWAYHASH_PORTABLE=1`` before import, or pass
``portable=True``, to use the portable loop instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from tf_bigexport.imageformat import _highwayhash as _native

Buffer = Union[bytes, bytearray, memoryview]

#: 'Riegeli/' and 'records\n' read as little-endian u64, twice.
RIEGELI_KEY: tuple[int, int, int, int] = (
    0x2F696C6567656952,
    0x0A7364726F636572,
    0x2F696C6567656952,
    0x0A7364726F636572,
)

#: The class is the native one: HighwayHash64(key=None, portable=False)
#: with .update(data), .digest() -> int and .copy(). key=None means RIEGELI_KEY.
HighwayHash64 = _native.HighwayHash64


def hash64(data: Buffer, key: Sequence[int] | None = RIEGELI_KEY, *, portable: bool = False) -> int:
    """HighwayHash-64 of ``data`` under ``key`` (four u64 words)."""
    return _native.hash64(data, None if key is RIEGELI_KEY else key, portable)


def hash64_rows(data: Buffer, row_size: int, key: Sequence[int] | None = RIEGELI_KEY,
                *, portable: bool = False) -> bytes:
    """Little-endian 8-byte hashes of each consecutive ``row_size``-byte row."""
    return _native.hash64_rows(data, row_size, None if key is RIEGELI_KEY else key, portable)


def implementation() -> str:
    """'avx2' or 'portable': the packet loop used unless portable=True is passed."""
    return _native.implementation()


def cpu_has_avx2() -> bool:
    """Whether this CPU offers the AVX2 loop at all."""
    return bool(_native.CPU_HAS_AVX2)
