"""Riegeli/records writer: signature chunk, then simple chunks of records."""
from __future__ import annotations

import os
from typing import BinaryIO

from tf_bigexport.imageformat.riegeli import simple_chunk
from tf_bigexport.imageformat.riegeli.chunk_header import SIGNATURE_HEADER, SIMPLE, ChunkHeader
from tf_bigexport.imageformat.riegeli.compression import COMPRESSION_TYPES, DEFAULT_LEVELS
from tf_bigexport.imageformat.riegeli.fileio import open_sink
from tf_bigexport.imageformat.riegeli.hashing import InlineHasher, make_hasher
from tf_bigexport.imageformat.riegeli.io_plan import fill_block_slots, plan_windows
from tf_bigexport.imageformat.riegeli.layout import (
    BLOCK_HEADER_SIZE,
    BLOCK_SIZE,
    CHUNK_HEADER_SIZE,
    add_with_overhead,
    block_headers_for_chunk,
    chunk_end,
    padding_runs,
    physical_runs,
)
from tf_bigexport.imageformat.riegeli.varint import encode_varint

_ZEROS = memoryview(bytes(BLOCK_SIZE))
_HASH_WHILE_WRITING_MIN = 1 << 20


class RecordWriter:
    """Writes records to a Riegeli/records file.

    Records up to ``chunk_size`` bytes are gathered into one simple chunk;
    a bigger record gets a chunk of its own, written straight from the
    caller's buffer.  Memory use is bounded by ``chunk_size`` plus the record
    being written.  A file object ``dest`` is written from its current
    position, which then counts as position 0 of the Riegeli file.
    """

    def __init__(self, dest: str | os.PathLike | BinaryIO, *, compression: str = "none",
                 level: int | None = None, chunk_size: int = 1 << 20) -> None:
        if compression not in COMPRESSION_TYPES:
            raise ValueError(f"compression must be one of {sorted(COMPRESSION_TYPES)}, got {compression!r}")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._compression = COMPRESSION_TYPES[compression]
        self._level = DEFAULT_LEVELS[compression] if level is None else level
        self._chunk_size = chunk_size
        self._sink, self.name = open_sink(dest)
        self._pos = 0  # physical end of what has been written
        self._sizes = bytearray()
        self._values = bytearray()
        self._count = 0
        self._state = "open"
        self._write_signature()

    # -- public API -------------------------------------------------------
    def write_record(self, data: bytes | bytearray | memoryview) -> int:
        """Append one record; returns its numeric position (chunk begin + index)."""
        self._check_open()
        view = memoryview(data).cast("B")
        size = len(view)
        if size > self._chunk_size:
            self._flush_pending()
            position = self._pos
            self._write_simple_chunk(encode_varint(size), view, 1)
            return position
        if self._count and len(self._values) + len(self._sizes) + size > self._chunk_size:
            self._flush_pending()
        position = self._pos + self._count
        self._sizes += encode_varint(size)
        self._values += view
        self._count += 1
        return position

    def flush(self) -> None:
        """Write gathered records as a chunk and flush the destination."""
        self._check_open()
        self._flush_pending()
        self._sink.flush()

    def close(self) -> None:
        if self._state == "closed":
            return
        try:
            if self._state == "open":
                self._flush_pending()
        finally:
            self._state = "closed"
            self._sink.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def position(self) -> int:
        """Physical size of the file written so far (pending records excluded)."""
        return self._pos

    # -- chunks -----------------------------------------------------------
    def _write_signature(self) -> None:
        end = chunk_end(0, 0, 0)
        self._write_logical(0, 0, [memoryview(SIGNATURE_HEADER.encode())],
                            memoryview(block_headers_for_chunk(0, end)), None)
        self._pos = end

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"{self.name}: writer is {self._state}")

    def _flush_pending(self) -> None:
        if not self._count:
            return
        sizes, values, count = self._sizes, self._values, self._count
        self._sizes, self._values, self._count = bytearray(), bytearray(), 0
        self._write_simple_chunk(sizes, values, count)

    def _write_simple_chunk(self, sizes, values, count: int) -> None:
        data = simple_chunk.encode_data(self._compression, self._level, sizes, values)
        self._write_chunk(SIMPLE, count, len(values), data)

    def _write_chunk(self, chunk_type: int, num_records: int, decoded_size: int, data: list) -> None:
        data = [memoryview(b).cast("B") for b in data if len(b)]
        begin = self._pos
        data_size = sum(len(b) for b in data)
        end = chunk_end(begin, data_size, num_records)
        # The header precedes the data but holds its hash.  Big chunks on a
        # seekable destination are hashed window by window just after each
        # window is written (still in cache; on a helper thread when very
        # big), and the header is filled in afterwards.  Others are hashed first.
        patch_header = data_size >= _HASH_WHILE_WRITING_MIN and self._sink.can_patch
        hasher = make_hasher(data_size) if patch_header else InlineHasher()
        try:
            if patch_header:
                header = bytes(CHUNK_HEADER_SIZE)
            else:
                for buf in data:
                    hasher.feed(buf)
                header = ChunkHeader(data_size, hasher.digest(), chunk_type, num_records,
                                     decoded_size).encode()
            block_headers = memoryview(block_headers_for_chunk(begin, end))
            self._write_logical(begin, 0, [memoryview(header)], block_headers, None)
            self._write_logical(begin, CHUNK_HEADER_SIZE, data, block_headers,
                                hasher if patch_header else None)
            self._write_padding(begin, end, add_with_overhead(begin, CHUNK_HEADER_SIZE + data_size),
                                block_headers)
            if patch_header:
                header = ChunkHeader(data_size, hasher.digest(), chunk_type, num_records,
                                     decoded_size).encode()
                self._patch_logical(begin, header)
        except BaseException:
            self._state = "failed (an earlier write raised)"
            raise
        finally:
            hasher.close()
        self._pos = end

    # -- physical layout --------------------------------------------------
    def _write_logical(self, chunk_begin: int, logical_begin: int, buffers: list,
                       block_headers: memoryview, hasher) -> None:
        first_block = _first_block(chunk_begin)
        for window in plan_windows(chunk_begin, logical_begin, buffers):
            fill_block_slots(window, block_headers, first_block)
            self._sink.write(window.iov)
            if hasher is not None:  # after the write: the window is still in cache
                for span in window.spans:
                    hasher.feed(span)

    def _write_padding(self, chunk_begin: int, end: int, padding_begin: int,
                       block_headers: memoryview) -> None:
        first_block = _first_block(chunk_begin)
        out = []
        for kind, pos, length in padding_runs(padding_begin, end):
            if kind == "block":
                at = (pos - first_block) // BLOCK_SIZE * BLOCK_HEADER_SIZE
                out.append(block_headers[at:at + BLOCK_HEADER_SIZE])
            else:
                out.append(_ZEROS[:length])
        self._sink.write(out)

    def _patch_logical(self, chunk_begin: int, header: bytes) -> None:
        done = 0
        for kind, pos, length in physical_runs(chunk_begin, 0, CHUNK_HEADER_SIZE):
            if kind == "data":
                self._sink.patch(pos, header[done:done + length])
                done += length


def _first_block(chunk_begin: int) -> int:
    return -(-chunk_begin // BLOCK_SIZE) * BLOCK_SIZE
