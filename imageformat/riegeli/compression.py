"""Compressed blocks inside chunk data.

A compressed block is varint64(decompressed size) followed by the compressed
stream; with compression "none" the block is the raw bytes.  Decompression is
streamed in bounded pieces and stops as soon as output passes the declared
size, so a forged size or a decompression bomb costs at most the allowed
limit, never an allocation taken on trust from the file.

Decoders: brotli and zstd streams go to the ``brotli`` and ``zstandard``
packages (our writer uses them too).  Two kinds of streams Google's C++
Riegeli writes need more:

* snappy ('s'): ``cramjam`` (maintained, memory-safe Rust, wheels for every
  platform we support), decoding straight into the record buffer, whose size
  is the declared one: the stream cannot write past it.
* brotli with a window over 16 MiB (Riegeli's window_log 25..30) uses the
  "large window" extension of RFC 7932, which the ``brotli`` package's
  decoder never enables; ``cramjam``'s decoder accepts it, again into the
  record buffer.  Such a stream starts with the 7 bits 0010001, which the
  standard format reserves, so the two cannot be confused.
* zstd frames with window_log above 27 (zstd's default decoding limit) are
  accepted up to zstd's maximum, 2 GiB: Riegeli writes window_log 30 frames
  even for small chunks.  The decoder reserves address space for the
  frame's window but only touches what it writes, which the declared size
  (within the reader's decoded budget) bounds.
"""
from __future__ import annotations

from collections.abc import Iterator

import brotli
import cramjam
import zstandard

from tf_bigexport.imageformat._bytesfiller import BytesFiller  # output buffer that becomes the record
from tf_bigexport.imageformat.riegeli.errors import ChunkFormatError
from tf_bigexport.imageformat.riegeli.varint import decode_varint, encode_varint

NONE = 0
BROTLI = ord("b")
ZSTD = ord("z")
SNAPPY = ord("s")

COMPRESSION_TYPES = {"none": NONE, "brotli": BROTLI, "zstd": ZSTD}  # what our writer writes
DECODABLE = (NONE, BROTLI, ZSTD, SNAPPY)
DEFAULT_LEVELS = {"none": None, "brotli": 6, "zstd": 3}
_NAMES = {NONE: "none", BROTLI: "brotli", ZSTD: "zstd", SNAPPY: "snappy"}

_PIECE = 16 << 20  # decompressor output per step
_PLAUSIBLE_RATIO = 64  # preallocate output up to this many bytes per compressed byte
_SNAPPY_MAX_RATIO = 32  # a 2-byte snappy copy element yields at most 64 bytes
_ZSTD_MAX_WINDOW = 1 << 31  # window_log 31, zstd's maximum on 64-bit


class DecompressionError(ChunkFormatError):
    """Bad compressed block; the reader adds file name and offset."""


def compression_name(code: int) -> str:
    return _NAMES.get(code, f"unknown (0x{code:02x})")


def compress_block(compression: int, data: bytes | bytearray | memoryview,
                   level: int | None) -> list[bytes]:
    """A compressed block for brotli or zstd: [size prefix, stream] (not joined)."""
    if compression == ZSTD:
        stream = zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
    elif compression == BROTLI:
        stream = brotli.compress(data, quality=6 if level is None else level)
    else:
        raise ValueError(f"not a compressing codec: {compression}")
    return [encode_varint(len(data)), stream]


def decompress_block(compression: int, block: memoryview, max_size: int) -> bytes | bytearray:
    """Decompress one block, whose declared size must be <= ``max_size``.

    Output goes into one buffer of the declared size when that size is
    plausible for the stream's length; otherwise it grows only as real output
    arrives, so a forged size alone never causes a big allocation.
    """
    if compression == NONE:
        if len(block) > max_size:
            raise DecompressionError(f"block of {len(block)} bytes exceeds the allowed {max_size}")
        return bytearray(block)
    parsed = decode_varint(block, 0)
    if parsed is None:
        raise DecompressionError("bad varint for the decompressed size")
    size, start = parsed
    if size > max_size:
        raise DecompressionError(f"declared decompressed size {size} exceeds the allowed {max_size}")
    stream = block[start:]
    if size == 0 and len(stream) == 0:
        return b""
    if compression == SNAPPY:
        return _snappy(stream, size)
    if compression == BROTLI and len(stream) and stream[0] & 0x7F == 0x11:
        return _brotli_large_window(stream, size)
    plausible = size <= _PLAUSIBLE_RATIO * len(stream) + _PIECE
    if compression == ZSTD and plausible:
        return _zstd_exact(stream, size)
    if compression == ZSTD:
        pieces = _zstd_pieces(stream, size)
    elif compression == BROTLI:
        pieces = _brotli_pieces(stream, size)
    else:
        raise DecompressionError(f"unsupported compression type {compression_name(compression)}")
    if plausible:
        out = _collect_exact(pieces, size)
    else:
        out = bytearray()
        for piece in pieces:
            out += piece
            if len(out) > size:
                raise DecompressionError(f"decompresses to more than the declared {size} bytes")
        if len(out) != size:
            raise DecompressionError(f"decompressed to {len(out)} bytes, declared {size}")
    return out


def _collect_exact(pieces: Iterator[bytes], size: int) -> bytes | bytearray:
    filler = BytesFiller(size)
    view = memoryview(filler)
    got = 0
    try:
        for piece in pieces:
            if got + len(piece) > size:
                raise DecompressionError(f"decompresses to more than the declared {size} bytes")
            view[got:got + len(piece)] = piece
            got += len(piece)
    finally:
        view.release()
    if got != size:
        raise DecompressionError(f"decompressed to {got} bytes, declared {size}")
    return filler.take()


def _zstd_exact(stream: memoryview, size: int) -> bytes:
    """Decompress straight into the bytes object returned."""
    return _into_record(_zstd_into, stream, size, "zstd")


def _zstd_into(stream: memoryview, view: memoryview) -> int:
    """Bytes the frame decodes to, filling ``view``; one more if it holds more than fits."""
    reader = _zstd_decompressor().stream_reader(stream, read_across_frames=False)
    got = 0
    while got < len(view):
        n = reader.readinto(view[got:])
        if not n:
            break
        got += n
    return got + len(reader.read(1))


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    """A decoder accepting every window Riegeli writes (window_log up to 31)."""
    return zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)


def _into_record(decode, stream: memoryview, size: int, codec: str) -> bytes:
    """Runs ``decode(stream, buffer)`` (returning the bytes it decoded) into a bytes
    object of exactly ``size`` bytes."""
    filler = BytesFiller(size)
    view = memoryview(filler)
    try:
        got = decode(stream, view)
    except (cramjam.DecompressionError, zstandard.ZstdError) as exc:
        raise DecompressionError(f"{codec}: {exc}") from None
    finally:
        view.release()
    if got != size:
        raise DecompressionError(f"decompressed to {got} bytes, declared {size}")
    return filler.take()


def _snappy(stream: memoryview, size: int) -> bytes:
    if size > _SNAPPY_MAX_RATIO * len(stream) + 32:
        raise DecompressionError(f"declared size {size} is more than snappy can encode in "
                                 f"{len(stream)} bytes")
    # A snappy stream states its own length; it must be the declared one.
    parsed = decode_varint(stream, 0)
    if parsed is None or parsed[0] != size:
        raise DecompressionError(f"snappy stream states {parsed[0] if parsed else 'no'} bytes, declared {size}")
    return _into_record(cramjam.snappy.decompress_raw_into, stream, size, "snappy")


def _brotli_large_window(stream: memoryview, size: int) -> bytes:
    # Output goes into the record buffer; a stream producing more fails at its end.
    return _into_record(cramjam.brotli.decompress_into, stream, size, "brotli (large window)")


def _zstd_pieces(stream: memoryview, size: int) -> Iterator[bytes]:
    try:
        reader = _zstd_decompressor().stream_reader(stream, read_across_frames=False)
        produced = 0
        while produced <= size:
            piece = reader.read(min(_PIECE, size + 1 - produced))
            if not piece:
                return
            produced += len(piece)
            yield piece
    except zstandard.ZstdError as exc:
        raise DecompressionError(f"zstd: {exc}") from None


def _brotli_pieces(stream: memoryview, size: int) -> Iterator[bytes]:
    decoder = brotli.Decompressor()
    produced = 0
    try:
        piece = decoder.process(stream, output_buffer_limit=_PIECE)
        # can_accept_more_data() is no end test: it turns true whenever the
        # decoder's output buffer drained, although input it already holds may
        # still decode to more (streams of 64 MiB and more stopped early).
        # Decode until the stream says it is finished or nothing comes out.
        while piece:
            produced += len(piece)
            yield piece
            if produced > size or decoder.is_finished():
                break
            piece = decoder.process(b"", output_buffer_limit=_PIECE)
    except brotli.error as exc:
        raise DecompressionError(f"brotli: {exc}") from None
    if produced <= size and not decoder.is_finished():
        raise DecompressionError("brotli: stream is truncated")
