"""Data of a transposed chunk ('t'): records as a state machine over column buffers.

Google's Riegeli writes this encoding when asked to (``transpose``): each
proto field (by parent message and tag) gets a buffer of its values, and a
state machine replays the records' fields, reading values from those buffers
and writing the records back to front.  The format is not in Riegeli's
specification ("TODO: Document this"); what follows was read from its
transpose_encoder.cc and transpose_decoder.cc and is implemented here anew.

Chunk data::

    compression_type (1 byte)
    varint64 len(header) | header (one compressed block)
    buckets (compressed blocks, lengths in the header; decompressed and cut into buffers)
    transitions (one compressed block: the rest of the data)

Header (decompressed), in order: varint32 num_buckets, varint32 num_buffers,
num_buckets x varint64 bucket length, num_buffers x varint64 buffer length,
varint32 number of states, one varint32 tag per state, one varint32 base per
state (plus the number of states when the transition is implicit), one
subtype byte per varint-tag state, one varint32 buffer index per state with
data (in state order), varint32 first state.

A state's tag is a proto tag or a reserved id: 0 no-op, 1 non-proto record,
2 start of submessage, 3 start of record; wire type 6 marks the end of a
submessage (tag - 4 is its length-delimited tag).  Each state writes its
field in front of what was written so far; a transition byte moves from the
state's base by ``byte >> 2`` and repeats the zero move ``byte & 3`` times;
implicit states move to their base without reading a byte.

Bounds: output never passes decoded_data_size (it is written into a buffer of
that size, back to front); header, buckets and transitions decompress to at
most 2 * decoded_data_size + data size + 1 MiB together; the state machine may take at most
4 * (transition bytes + 1) + 2 * decoded_data_size + 2 * num_records steps,
which every chunk Riegeli writes stays under (each step writes a byte, starts
a record, or spends a transition byte) and which keeps a machine of
no-op loops linear in the chunk's size.
"""
from __future__ import annotations

from typing import Callable

from tf_bigexport.imageformat._bytesfiller import BytesFiller
from tf_bigexport.imageformat.riegeli.compression import NONE, compression_name, decompress_block
from tf_bigexport.imageformat.riegeli.errors import ChunkFormatError
from tf_bigexport.imageformat.riegeli.varint import decode_varint, encode_varint

# Reserved state ids (Riegeli's MessageId).
_NO_OP, _NON_PROTO, _START_OF_SUBMESSAGE, _START_OF_MESSAGE = 0, 1, 2, 3
_SUBMESSAGE_END_WIRE_TYPE = 6
# Subtypes (Riegeli's chunk_encoding_internal::Subtype).
_VARINT_INLINE_0 = 10
_VARINT_INLINE_MAX = _VARINT_INLINE_0 + 0x7F
_STRING, _END_OF_SUBMESSAGE = 0, 2
_FAILURE_STATES = 0xFF  # transitions may reach this far past the last state
_MAX_UINT32 = (1 << 32) - 1

# What a state does.
_FAIL, _NOOP, _MESSAGE_START, _SUBMESSAGE_START, _SUBMESSAGE_END, _NONPROTO = range(6)
_COPY_TAG, _VARINT, _FIXED, _STRING_FIELD = range(6, 10)


class _Buffer:
    """A decompressed column: values read front to back."""

    __slots__ = ("data", "pos")

    def __init__(self, data) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int, what: str):
        end = self.pos + n
        if end > len(self.data):
            raise ChunkFormatError(f"transposed chunk: {what}: buffer ends early")
        piece = self.data[self.pos:end]
        self.pos = end
        return piece

    def varint32(self, what: str) -> int:
        parsed = decode_varint(self.data, self.pos)
        if parsed is None or parsed[0] > _MAX_UINT32 or parsed[1] - self.pos > 5:
            raise ChunkFormatError(f"transposed chunk: {what}: bad varint")
        self.pos = parsed[1]
        return parsed[0]


class _Header(_Buffer):
    def varint(self, what: str, limit: int = (1 << 64) - 1) -> int:
        parsed = decode_varint(self.data, self.pos)
        if parsed is None or parsed[0] > limit:
            raise ChunkFormatError(f"transposed chunk header: bad or missing {what}")
        self.pos = parsed[1]
        return parsed[0]


class _State:
    __slots__ = ("action", "tag", "width", "buffer", "implicit", "next")

    def __init__(self) -> None:
        self.action = _FAIL
        self.tag = b""  # the field's tag bytes (plus an inline value for inline varints)
        self.width = 0  # bytes of a varint / fixed value
        self.buffer: _Buffer | None = None
        self.implicit = False
        self.next = 0


def decode_data(data: memoryview, num_records: int, decoded_data_size: int,
                max_expansion: int) -> list[bytes]:
    """All records of a transposed chunk whose data hash was already checked."""
    if len(data) < 1:
        raise ChunkFormatError("transposed chunk data is empty")
    compression = data[0]
    header_len_parsed = decode_varint(data, 1)
    if header_len_parsed is None:
        raise ChunkFormatError("transposed chunk: bad varint for the header size")
    header_len, pos = header_len_parsed
    if header_len > len(data) - pos:
        raise ChunkFormatError(f"transposed chunk: header of {header_len} bytes does not fit in "
                               f"{len(data) - pos}")
    # Everything decompressed (header, buckets, transitions) shares one allowance: the
    # buffers become the records, the header and transitions are smaller than them.
    allowance = min(max(len(data), 1) * max_expansion, 2 * decoded_data_size + len(data) + (1 << 20))

    def decompress(block: memoryview, what: str):
        nonlocal allowance
        try:
            decoded = decompress_block(compression, block, allowance)
        except ChunkFormatError as exc:
            raise ChunkFormatError(f"transposed chunk {what}: {exc}") from None
        allowance -= len(decoded)
        return decoded

    if compression != NONE and compression_name(compression).startswith("unknown"):
        raise ChunkFormatError(f"transposed chunk: unsupported compression type {compression_name(compression)}")
    header = _Header(decompress(data[pos:pos + header_len], "header"))
    pos += header_len
    buffers, pos = _read_buffers(header, data, pos, decompress)
    states, first, nonproto_lengths = _read_states(header, buffers)
    if header.pos != len(header.data):
        raise ChunkFormatError(f"transposed chunk header: {len(header.data) - header.pos} stray bytes")
    transitions = decompress(data[pos:], "transitions")
    return _run(states, first, nonproto_lengths, transitions, num_records, decoded_data_size)


def _read_buffers(header: _Header, data: memoryview, pos: int,
                  decompress: Callable) -> tuple[list[_Buffer], int]:
    num_buckets = header.varint("number of buckets", _MAX_UINT32)
    num_buffers = header.varint("number of buffers", _MAX_UINT32)
    if num_buckets == 0:
        if num_buffers:
            raise ChunkFormatError("transposed chunk: buffers without buckets")
        return [], pos
    if num_buckets > len(data) or num_buffers > len(header.data):  # each takes at least a byte
        raise ChunkFormatError(f"transposed chunk: {num_buckets} buckets / {num_buffers} buffers "
                               f"cannot fit in the chunk")
    bucket_lengths = [header.varint("bucket length") for _ in range(num_buckets)]
    buffer_lengths = [header.varint("buffer length") for _ in range(num_buffers)]
    buckets = []
    for length in bucket_lengths:
        if length > len(data) - pos:
            raise ChunkFormatError("transposed chunk: bucket runs past the end of the chunk")
        buckets.append(memoryview(decompress(data[pos:pos + length], "bucket")))
        pos += length
    # Buffers are cut from the buckets in order and never straddle two buckets.
    buffers = []
    bucket, offset = 0, 0
    for length in buffer_lengths:
        if length > len(buckets[bucket]) - offset:
            raise ChunkFormatError("transposed chunk: buffer runs past the end of its bucket")
        buffers.append(_Buffer(buckets[bucket][offset:offset + length]))
        offset += length
        while offset == len(buckets[bucket]) and bucket + 1 < num_buckets:
            bucket, offset = bucket + 1, 0
    if bucket + 1 < num_buckets or offset != len(buckets[bucket]):
        raise ChunkFormatError("transposed chunk: buckets hold more than their buffers")
    return buffers, pos


def _read_states(header: _Header, buffers: list[_Buffer]) -> tuple[list[_State], int, _Buffer | None]:
    count = header.varint("number of states", _MAX_UINT32)
    if count > len(header.data):  # each state takes at least two header bytes
        raise ChunkFormatError(f"transposed chunk: {count} states cannot fit in the header")
    tags = [header.varint("state tag", _MAX_UINT32) for _ in range(count)]
    bases = [header.varint("state base", _MAX_UINT32) for _ in range(count)]
    with_subtype = sum(1 for tag in tags if _valid_tag(tag) and tag & 7 == 0)
    subtypes = header.read(with_subtype, "subtypes")
    next_subtype = 0
    has_nonproto = False
    states = [_State() for _ in range(count + _FAILURE_STATES)]

    def buffer_at(what: str) -> _Buffer:
        index = header.varint(f"buffer index of {what}", _MAX_UINT32)
        if index >= len(buffers):
            raise ChunkFormatError(f"transposed chunk: buffer index {index} of {what} is past "
                                   f"the {len(buffers)} buffers")
        return buffers[index]

    for i, tag in enumerate(tags):
        state = states[i]
        if tag == _NO_OP:
            state.action = _NOOP
        elif tag == _NON_PROTO:
            state.action = _NONPROTO
            state.buffer = buffer_at("a non-proto state")
            has_nonproto = True
        elif tag == _START_OF_MESSAGE:
            state.action = _MESSAGE_START
        elif tag == _START_OF_SUBMESSAGE:
            state.action = _SUBMESSAGE_START
        else:
            subtype = _STRING
            if tag & 7 == _SUBMESSAGE_END_WIRE_TYPE:
                tag -= _SUBMESSAGE_END_WIRE_TYPE - 2
                subtype = _END_OF_SUBMESSAGE
            if not _valid_tag(tag):
                raise ChunkFormatError(f"transposed chunk: invalid tag {tag} in state {i}")
            wire_type = tag & 7
            state.tag = encode_varint(tag)
            if wire_type == 0:
                subtype = subtypes[next_subtype]
                next_subtype += 1
                if subtype > _VARINT_INLINE_MAX:
                    raise ChunkFormatError(f"transposed chunk: invalid varint subtype {subtype} in state {i}")
                if subtype >= _VARINT_INLINE_0:
                    state.action = _COPY_TAG
                    state.tag += bytes([subtype - _VARINT_INLINE_0])
                else:
                    state.action, state.width = _VARINT, subtype + 1
                    state.buffer = buffer_at(f"state {i}")
            elif wire_type in (1, 5):
                state.action, state.width = _FIXED, 8 if wire_type == 1 else 4
                state.buffer = buffer_at(f"state {i}")
            elif wire_type == 2:
                if subtype == _STRING:
                    state.action = _STRING_FIELD
                    state.buffer = buffer_at(f"state {i}")
                else:
                    state.action = _SUBMESSAGE_END
            else:  # groups: the tag alone
                state.action = _COPY_TAG
        base = bases[i]
        if base >= count:
            base -= count
            state.implicit = True
        if base >= count:
            raise ChunkFormatError(f"transposed chunk: state {i} moves to state {base}, past the {count} states")
        state.next = base
    nonproto_lengths = None
    if has_nonproto:
        if not buffers:
            raise ChunkFormatError("transposed chunk: non-proto records but no buffer of their lengths")
        nonproto_lengths = buffers[-1]
    first = header.varint("first state", _MAX_UINT32)
    if first >= count:
        raise ChunkFormatError(f"transposed chunk: first state {first} is past the {count} states")
    _check_no_implicit_loop(states, count)
    return states, first, nonproto_lengths


def _valid_tag(tag: int) -> bool:
    return tag & 7 < 6 and tag >= 8


def _check_no_implicit_loop(states: list[_State], count: int) -> None:
    """Implicit moves read no transition byte: a cycle of them would never end."""
    seen = [0] * count
    for start in range(count):
        if seen[start]:
            continue
        mark = start + 1
        seen[start] = mark
        state = states[start]
        while state.implicit:
            index = state.next
            if seen[index] == mark:
                raise ChunkFormatError("transposed chunk: states contain an implicit loop")
            if seen[index]:
                break
            seen[index] = mark
            state = states[index]


def _run(states: list[_State], first: int, nonproto_lengths: _Buffer | None, transitions,
         num_records: int, decoded_data_size: int) -> list[bytes]:
    """Runs the state machine, writing records back to front into one buffer."""
    filler = BytesFiller(decoded_data_size)
    out = memoryview(filler)
    try:
        ends = _replay(states, first, nonproto_lengths, transitions, num_records, decoded_data_size, out)
    finally:
        out.release()
    whole = filler.take()
    if num_records == 1:
        return [whole]
    view = memoryview(whole)
    starts = [0] + ends[:-1]
    return [bytes(view[a:b]) for a, b in zip(starts, ends)]


def _replay(states, first, nonproto_lengths, transitions, num_records, size, out) -> list[int]:
    cursor = size  # output is written in front of cursor
    limits: list[int] = []  # written-so-far at each record start, last record first
    open_submessages: list[tuple[int, _State]] = []
    steps_left = 4 * (len(transitions) + 1) + 2 * size + 2 * num_records
    transition_at = 0
    index = first
    state = states[index]
    repeats = 1 if state.implicit else 0

    def put(piece) -> None:
        nonlocal cursor
        n = len(piece)
        if n > cursor:
            raise ChunkFormatError(f"transposed chunk: records exceed decoded_data_size {size}")
        cursor -= n
        out[cursor:cursor + n] = piece

    while True:
        steps_left -= 1
        if steps_left < 0:
            raise ChunkFormatError("transposed chunk: the state machine takes more steps than its "
                                   "transitions and output allow")
        action = state.action
        if action == _COPY_TAG:
            put(state.tag)
        elif action == _VARINT:
            value = bytearray(state.buffer.read(state.width, "varint field"))
            for k in range(len(value) - 1):
                value[k] |= 0x80
            put(value)
            put(state.tag)
        elif action == _FIXED:
            put(state.buffer.read(state.width, "fixed field"))
            put(state.tag)
        elif action == _STRING_FIELD:
            buffer = state.buffer
            start = buffer.pos
            length = buffer.varint32("string length")
            buffer.read(length, "string field")
            put(buffer.data[start:buffer.pos])
            put(state.tag)
        elif action == _SUBMESSAGE_END:
            open_submessages.append((size - cursor, state))
        elif action == _SUBMESSAGE_START:
            if not open_submessages:
                raise ChunkFormatError("transposed chunk: submessage start without its end")
            end_at, end_state = open_submessages.pop()
            length = size - cursor - end_at
            if length > _MAX_UINT32:
                raise ChunkFormatError("transposed chunk: submessage too large")
            put(encode_varint(length))
            put(end_state.tag)
        elif action == _MESSAGE_START or action == _NONPROTO:
            if action == _NONPROTO:
                length = nonproto_lengths.varint32("non-proto record length")
                put(state.buffer.read(length, "non-proto record"))
            if open_submessages:
                raise ChunkFormatError("transposed chunk: record ends inside a submessage")
            if len(limits) == num_records:
                raise ChunkFormatError(f"transposed chunk: more than the header's {num_records} records")
            limits.append(size - cursor)
        elif action == _FAIL:
            raise ChunkFormatError(f"transposed chunk: transition to invalid state {index}")
        # Move to the next state.
        index = state.next
        if repeats == 0:
            if transition_at == len(transitions):
                break
            byte = transitions[transition_at]
            transition_at += 1
            index += byte >> 2
            state = states[index]
            repeats = (byte & 3) + (1 if state.implicit else 0)
        else:
            state = states[index]
            if not state.implicit:
                repeats -= 1
    if open_submessages:
        raise ChunkFormatError("transposed chunk: submessages still open at the end")
    if len(limits) != num_records:
        raise ChunkFormatError(f"transposed chunk: {len(limits)} records, the header says {num_records}")
    if cursor != 0 or (limits and limits[-1] != size):
        raise ChunkFormatError(f"transposed chunk: records take {size - cursor} bytes, "
                               f"decoded_data_size says {size}")
    # limits hold the size of the last k records; turn them into record ends, first record first.
    return [size - written for written in reversed(limits[:-1])] + ([size] if limits else [])
