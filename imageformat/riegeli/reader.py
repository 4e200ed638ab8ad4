"""Riegeli/records reader: sequential, by numeric position, and last record.

Every header and data hash is checked before a record is returned, and every
size read from the file is checked against the file size before anything is
allocated for it.  Problems raise RiegeliError(path, offset, reason).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO

from tf_bigexport.imageformat._bytesfiller import BytesFiller  # bytes filled in place by preadv
from tf_bigexport.imageformat.limits import RECORD_COST, ReadLimits, exceeded
from tf_bigexport.imageformat.riegeli import simple_chunk, transposed_chunk
from tf_bigexport.imageformat.riegeli.chunk_header import (
    METADATA,
    PADDING,
    SIGNATURE,
    SIGNATURE_HEADER,
    SIMPLE,
    TRANSPOSED,
    ChunkHeader,
    decode_chunk_header,
    describe_chunk_type,
)
from tf_bigexport.imageformat.riegeli.compression import NONE
from tf_bigexport.imageformat.riegeli.errors import ChunkFormatError, RiegeliError
from tf_bigexport.imageformat.riegeli.fileio import NotRegularFile, ShortRead, open_source
from tf_bigexport.imageformat.riegeli.hashing import InlineHasher, make_hasher
from tf_bigexport.imageformat.riegeli.io_plan import plan_windows
from tf_bigexport.imageformat.riegeli.layout import (
    BLOCK_HEADER_SIZE,
    BLOCK_SIZE,
    CHUNK_HEADER_SIZE,
    block_header_is_plausible,
    block_headers_for_chunk,
    chunk_end,
    encode_block_header,
    is_possible_chunk_boundary,
)
from tf_bigexport.imageformat.riegeli.varint import MAX_VARINT64_BYTES

#: The first 64 bytes of every Riegeli/records file.
FILE_SIGNATURE = encode_block_header(0, 64) + SIGNATURE_HEADER.encode()
FIRST_CHUNK = len(FILE_SIGNATURE)

#: Default cap on decoded bytes per byte of chunk data (decompression bombs).
MAX_EXPANSION = 1 << 20

_SCRATCH = 4 << 20  # piece size when only hashing non-record chunk data
_DIRECT_MIN = 256 << 10  # uncompressed chunks this big are read into the record objects
_DIRECT_MAX_RECORDS = 64
RECORD_CHUNKS = (SIMPLE, TRANSPOSED)
_CACHE_BYTES = 64 << 20  # decoded chunks kept for read_record_at neighbours


class _Chunk:
    __slots__ = ("begin", "end", "header", "blocks")

    def __init__(self, begin: int, end: int, header: ChunkHeader) -> None:
        self.begin = begin
        self.end = end
        self.header = header
        self.blocks: list[tuple[int, bytearray]] = []  # block headers read so far


class _DecodedChunks:
    """Records of recently decoded chunks, for read_record_at.

    Chunks up to _CACHE_BYTES are kept, least recently used first out, so
    records of one chunk looked up one by one (in any order) decode it once.
    A bigger chunk of several records is kept alone, and each record is let go
    once handed out: looking its records up one by one stays linear without
    keeping a second copy of what the caller already holds.
    """

    def __init__(self) -> None:
        self._small: OrderedDict[int, list[bytes]] = OrderedDict()
        self._small_bytes = 0
        self._big: tuple[int, list] | None = None

    def take(self, begin: int, index: int) -> bytes | None:
        records = self._small.get(begin)
        if records is not None:
            self._small.move_to_end(begin)
            return records[index]
        if self._big is not None and self._big[0] == begin:
            record, self._big[1][index] = self._big[1][index], None
            return record
        return None

    def put(self, begin: int, records: list[bytes], decoded_size: int) -> None:
        if decoded_size > _CACHE_BYTES:
            self._big = (begin, list(records)) if len(records) > 1 else None
            return
        self._small[begin] = records
        self._small_bytes += decoded_size
        while self._small_bytes > _CACHE_BYTES:
            _, dropped = self._small.popitem(last=False)
            self._small_bytes -= sum(map(len, dropped))

    def clear(self) -> None:
        self._small.clear()
        self._small_bytes = 0
        self._big = None


class RecordReader:
    """Reads a Riegeli/records file (a path or a seekable binary file object,
    read as a whole from offset 0).  Not safe to share between threads.

    ``name`` labels errors (defaults to the path or the object's ``name``).
    ``max_expansion`` caps decoded bytes per byte of compressed chunk data
    (decompression bombs); the default still admits long runs of zeros.
    ``limits`` bounds the records decoded over the reader's life, re-reads
    included (default: ``ReadLimits.for_file`` of the file's size).
    Paths that are not regular files (FIFOs, devices) are refused unopened.
    """

    def __init__(self, src: str | os.PathLike | BinaryIO, *, name: str | None = None,
                 max_expansion: int = MAX_EXPANSION, limits: ReadLimits | None = None) -> None:
        try:
            self._source, self.name = open_source(src, name)
        except NotRegularFile as exc:
            raise RiegeliError(name or str(src), None, f"{exc}; refusing to read it") from None
        except OSError as exc:
            raise RiegeliError(name or str(src), None, f"cannot open: {exc.strerror or exc}") from exc
        except (AttributeError, ValueError) as exc:
            raise RiegeliError(name or str(src), None, f"not a seekable binary file: {exc}") from exc
        self.size = self._source.size
        self._max_expansion = max_expansion
        self.limits = limits or ReadLimits.for_file(self.size)
        self.decoded_bytes = 0  # records decoded so far, re-reads included
        self._cache = _DecodedChunks()
        self._located: _Chunk | None = None  # the chunk of the last read_record_at
        try:
            self._check_signature()
        except BaseException:
            self._source.close()
            raise

    # -- public API -------------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        for _, record in self.records_with_positions():
            yield record

    def records_with_positions(self) -> Iterator[tuple[int, bytes]]:
        """(numeric position, record) for every record, in file order."""
        pos = FIRST_CHUNK
        while pos < self.size:
            chunk = self._read_chunk_header(pos)
            for index, record in enumerate(self._chunk_records(chunk)):
                yield chunk.begin + index, record
            pos = chunk.end

    def read_record_at(self, pos: int) -> bytes:
        """The record at numeric position ``pos`` (chunk begin + index)."""
        if not FIRST_CHUNK <= pos < self.size:
            raise self._error(pos, f"no record at position {pos}: outside the file's records "
                                   f"[{FIRST_CHUNK}, {self.size})")
        chunk = self._located
        if chunk is None or not chunk.begin <= pos < chunk.end:
            chunk = self._located = self._chunk_containing(pos)
        index = pos - chunk.begin
        if chunk.header.chunk_type not in RECORD_CHUNKS or index >= chunk.header.num_records:
            raise self._error(pos, f"no record at position {pos}: chunk at {chunk.begin} holds "
                                   f"{chunk.header.num_records} record(s)")
        record = self._cache.take(chunk.begin, index)
        if record is None:
            records = self._chunk_records(chunk)
            self._cache.put(chunk.begin, records, chunk.header.decoded_data_size)
            self._cache.take(chunk.begin, index)  # a big chunk's copy lets go of what is handed out
            record = records[index]
        return record

    def read_last_record(self) -> bytes:
        """The file's last record, found through block headers from the end."""
        limit = self.size
        block = (self.size - 1) // BLOCK_SIZE * BLOCK_SIZE
        while True:
            start, claimed_end = self._chunk_interrupted_by(block)
            last = None
            pos = start
            while pos < limit:
                chunk = self._read_chunk_header(pos)
                if claimed_end is not None and pos == start and chunk.end != claimed_end:
                    raise self._error(block, f"block header says the chunk at {start} ends at "
                                             f"{claimed_end}, its header says {chunk.end}")
                if chunk.end > limit:
                    raise self._error(pos, f"chunk ends at {chunk.end}, past the next chunk or "
                                           f"the end of the file at {limit}")
                if chunk.header.chunk_type in RECORD_CHUNKS and chunk.header.num_records:
                    last = chunk
                else:
                    self._chunk_records(chunk)  # verifies its hashes
                pos = chunk.end
            if last is not None:
                records = self._chunk_records(last)
                self._cache.put(last.begin, records, last.header.decoded_data_size)
                return records[-1]
            if start <= FIRST_CHUNK:
                raise self._error(None, "the file holds no records")
            limit = start
            block = (start - 1) // BLOCK_SIZE * BLOCK_SIZE

    def close(self) -> None:
        self._cache.clear()
        self._source.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- locating chunks --------------------------------------------------
    def _error(self, offset: int | None, reason: str) -> RiegeliError:
        return RiegeliError(self.name, offset, reason)

    def _check_signature(self) -> None:
        head = bytearray(min(self.size, FIRST_CHUNK))
        self._read_at(0, [memoryview(head)])
        if head == FILE_SIGNATURE:
            return
        if self.size < FIRST_CHUNK:
            raise self._error(self.size, f"file of {self.size} bytes is too short for a "
                                         f"Riegeli/records file signature (64 bytes)")
        if head[:BLOCK_HEADER_SIZE] != FILE_SIGNATURE[:BLOCK_HEADER_SIZE]:
            raise self._error(0, "first block header is not a Riegeli/records file signature")
        raise self._error(BLOCK_HEADER_SIZE, "file signature chunk is corrupt or missing "
                                             "(not a Riegeli/records file)")

    def _read_block_header(self, block: int) -> tuple[int, int]:
        raw = bytearray(BLOCK_HEADER_SIZE)
        self._read_at(block, [memoryview(raw)])
        previous_chunk = int.from_bytes(raw[8:16], "little")
        next_chunk = int.from_bytes(raw[16:24], "little")
        if bytes(raw) != encode_block_header(previous_chunk, next_chunk):
            raise self._error(block, "block header hash mismatch")
        if not block_header_is_plausible(previous_chunk, next_chunk, block):
            raise self._error(block, f"block header has impossible distances "
                                     f"(previous_chunk={previous_chunk}, next_chunk={next_chunk})")
        return previous_chunk, next_chunk

    def _chunk_interrupted_by(self, block: int) -> tuple[int, int | None]:
        """Begin of the chunk crossing ``block`` and the end its block header claims."""
        if block == 0:
            return FIRST_CHUNK, None
        previous_chunk, next_chunk = self._read_block_header(block)
        return max(block - previous_chunk, FIRST_CHUNK), block + next_chunk

    def _chunk_containing(self, pos: int) -> _Chunk:
        block = pos - pos % BLOCK_SIZE
        start, claimed_end = self._chunk_interrupted_by(block)
        if claimed_end is not None and pos >= claimed_end:
            start, claimed_end = claimed_end, None
        chunk = self._read_chunk_header(start)
        if claimed_end is not None and chunk.end != claimed_end:
            raise self._error(block, f"block header says the chunk at {start} ends at "
                                     f"{claimed_end}, its header says {chunk.end}")
        while pos >= chunk.end:
            chunk = self._read_chunk_header(chunk.end)
        return chunk

    def _read_chunk_header(self, begin: int) -> _Chunk:
        if not is_possible_chunk_boundary(begin) or begin < FIRST_CHUNK:
            raise self._error(begin, "chunk cannot begin here (inside a block header)")
        raw = bytearray(CHUNK_HEADER_SIZE)
        chunk = _Chunk(begin, 0, ChunkHeader(0, 0, 0, 0, 0))
        try:
            self._read_logical(chunk, 0, [memoryview(raw)])
        except RiegeliError as exc:
            raise self._error(exc.offset, f"truncated: chunk header at {begin} is cut off by "
                                          f"the end of the file ({self.size} bytes)") from None
        header, hash_ok = decode_chunk_header(raw)
        if not hash_ok:
            raise self._error(begin, "chunk header hash mismatch")
        chunk.header = header
        chunk.end = chunk_end(begin, header.data_size, header.num_records)
        if chunk.end > self.size:
            raise self._error(begin, f"truncated: chunk (data_size={header.data_size}, "
                                     f"num_records={header.num_records}) would end at {chunk.end}, "
                                     f"the file has {self.size} bytes")
        self._check_chunk_fields(chunk)
        self._check_block_headers(chunk)
        return chunk

    def _check_chunk_fields(self, chunk: _Chunk) -> None:
        h = chunk.header
        kind = describe_chunk_type(h.chunk_type)
        if h.chunk_type == SIGNATURE:
            bad = h.data_size or h.num_records or h.decoded_data_size
        elif h.chunk_type == PADDING:
            bad = h.num_records or h.decoded_data_size
        elif h.chunk_type == METADATA:
            bad = h.num_records
        elif h.chunk_type in RECORD_CHUNKS:
            bad = h.data_size < 2 and h.num_records > 0
        elif h.num_records:  # a chunk type from a later Riegeli: its records cannot be read
            raise self._error(chunk.begin, f"unknown chunk type {kind} with {h.num_records} records")
        else:  # unknown but recordless: skipped, as Riegeli's own reader does
            bad = False
        if bad:
            raise self._error(chunk.begin, f"chunk of type {kind} has impossible fields "
                                           f"{h.data_size=} {h.num_records=} {h.decoded_data_size=}")

    def _check_block_headers(self, chunk: _Chunk) -> None:
        if not chunk.blocks:
            return
        expected = block_headers_for_chunk(chunk.begin, chunk.end)
        first = -(-chunk.begin // BLOCK_SIZE) * BLOCK_SIZE
        for pos, raw in chunk.blocks:
            at = (pos - first) // BLOCK_SIZE * BLOCK_HEADER_SIZE
            if raw != expected[at:at + BLOCK_HEADER_SIZE]:
                raise self._error(pos, f"block header is corrupt or does not match the chunk "
                                       f"at {chunk.begin}")
        chunk.blocks.clear()

    # -- reading chunk contents --------------------------------------------
    def _chunk_records(self, chunk: _Chunk) -> list[bytes]:
        """Records of the chunk after all its hashes are checked ([] for non-record chunks)."""
        h = chunk.header
        if h.chunk_type not in RECORD_CHUNKS:
            self._verify_data_hash_only(chunk)
            return []
        if h.decoded_data_size > h.data_size * self._max_expansion:
            raise self._error(chunk.begin, f"decoded_data_size {h.decoded_data_size} is more than "
                                           f"{self._max_expansion}x the chunk's {h.data_size} data bytes")
        self._charge(chunk, h.decoded_data_size + RECORD_COST * h.num_records)
        head = bytearray(min(h.data_size, 1 + MAX_VARINT64_BYTES))
        hasher = make_hasher(h.data_size)
        try:
            self._read_logical(chunk, CHUNK_HEADER_SIZE, [memoryview(head)], hasher)
            if h.chunk_type == TRANSPOSED:
                records = self._read_buffered(chunk, head, hasher, transposed_chunk.decode_data)
            elif (head[0] == NONE and h.data_size >= _DIRECT_MIN
                    and h.num_records <= _DIRECT_MAX_RECORDS):
                records = self._read_direct(chunk, head, hasher)
            else:
                records = self._read_buffered(chunk, head, hasher)
        finally:
            hasher.close()
        return records

    def _charge(self, chunk: _Chunk, decoded: int) -> None:
        """Counts ``decoded`` bytes against the reader's budget before they are decoded."""
        if self.decoded_bytes + decoded > self.limits.decoded_bytes:
            raise self._error(chunk.begin, exceeded(
                f"this chunk would bring the records decoded from the {self.size}-byte file to "
                f"{self.decoded_bytes + decoded} bytes, past the {self.limits.decoded_bytes} allowed"))
        self.decoded_bytes += decoded

    def _read_buffered(self, chunk: _Chunk, head: bytearray, hasher,
                       decode=simple_chunk.decode_data) -> list[bytes]:
        h = chunk.header
        data = BytesFiller(h.data_size)  # scratch: uninitialised, huge pages when big
        view = memoryview(data)
        view[:len(head)] = head
        self._read_logical(chunk, CHUNK_HEADER_SIZE + len(head), [view[len(head):]], hasher)
        self._check_data_hash(chunk, hasher)
        try:
            return decode(view, h.num_records, h.decoded_data_size, self._max_expansion)
        except ChunkFormatError as exc:
            kind = "transposed" if h.chunk_type == TRANSPOSED else "simple"
            raise self._error(chunk.begin, f"{kind} chunk: {exc}") from None

    def _read_direct(self, chunk: _Chunk, head: bytearray, hasher) -> list[bytes]:
        """Uncompressed big records: preadv straight into the bytes objects returned."""
        h = chunk.header
        try:
            _, sizes_at, sizes_len = simple_chunk.parse_prefix(head, h.data_size, h.num_records)
            values_at = sizes_at + sizes_len
            prefix = bytearray(max(values_at, len(head)))
            prefix[:len(head)] = head
            if values_at > len(head):
                self._read_logical(chunk, CHUNK_HEADER_SIZE + len(head),
                                   [memoryview(prefix)[len(head):]], hasher)
            lengths = simple_chunk.parse_sizes(memoryview(prefix)[sizes_at:values_at],
                                               h.num_records, h.decoded_data_size)
            if h.data_size - values_at != h.decoded_data_size:
                raise ChunkFormatError(f"values take {h.data_size - values_at} bytes, header says "
                                       f"{h.decoded_data_size}")
        except ChunkFormatError as exc:
            raise self._error(chunk.begin, f"simple chunk: {exc}") from None
        fillers = [BytesFiller(n) for n in lengths]
        self._fill_values(chunk, fillers, memoryview(prefix)[values_at:], hasher)
        self._check_data_hash(chunk, hasher)
        return [f.take() for f in fillers]

    def _fill_values(self, chunk: _Chunk, fillers: list, already: memoryview, hasher) -> None:
        """Copy the values bytes already read, then read the rest into the fillers."""
        targets = []
        for filler in fillers:
            view = memoryview(filler)
            n = min(len(already), len(view))
            view[:n] = already[:n]
            already = already[n:]
            if n < len(view):
                targets.append(view[n:])
        consumed = chunk.header.data_size - sum(len(t) for t in targets)
        self._read_logical(chunk, CHUNK_HEADER_SIZE + consumed, targets, hasher)
        hasher.digest()  # the hashing thread must let go of the views before take()

    def _verify_data_hash_only(self, chunk: _Chunk) -> None:
        hasher = InlineHasher()  # scratch is reused, so hash each piece before the next read
        try:
            scratch = bytearray(min(chunk.header.data_size, _SCRATCH))
            done = 0
            while done < chunk.header.data_size:
                n = min(len(scratch), chunk.header.data_size - done)
                piece = memoryview(scratch)[:n]
                self._read_logical(chunk, CHUNK_HEADER_SIZE + done, [piece], hasher)
                done += n
            self._check_data_hash(chunk, hasher)
        finally:
            hasher.close()

    def _check_data_hash(self, chunk: _Chunk, hasher) -> None:
        self._check_block_headers(chunk)
        if hasher.digest() != chunk.header.data_hash:
            raise self._error(chunk.begin, f"chunk data hash mismatch "
                                           f"({chunk.header.data_size} data bytes)")

    # -- physical reads -----------------------------------------------------
    def _read_at(self, offset: int, buffers: list[memoryview]) -> None:
        try:
            self._source.read_into(offset, buffers)
        except ShortRead as exc:
            raise self._error(exc.offset, f"truncated: file ends at {self.size} bytes") from None
        except OSError as exc:
            raise self._error(offset, f"read failed: {exc}") from exc

    def _read_logical(self, chunk: _Chunk, logical_begin: int, targets: list[memoryview],
                      hasher=None) -> None:
        """Fill ``targets`` with the chunk's logical bytes from ``logical_begin``,
        keeping the block headers crossed (checked later) and feeding the hasher
        window by window, so it hashes one window while the next is read."""
        for window in plan_windows(chunk.begin, logical_begin, targets):
            for slot, pos in window.block_slots:
                raw = bytearray(BLOCK_HEADER_SIZE)
                chunk.blocks.append((pos, raw))
                window.iov[slot] = memoryview(raw)
            self._read_at(window.start, window.iov)
            if hasher is not None:
                for span in window.spans:
                    hasher.feed(span)
