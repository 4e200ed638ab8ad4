"""Message counts of serialized protobufs, taken before they are parsed.

``MessageBudget`` holds one file's running totals: every protobuf parsed from
the file is first scanned by the native ``_protoscan`` (message fields only,
no allocation), and refused if the file's messages would pass
``ReadLimits.messages_allowed`` of the bytes parsed so far.
"""
from __future__ import annotations

import functools
import struct

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tf_bigexport.imageformat import _protoscan
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.limits import ReadLimits, exceeded


class MalformedProto(ValueError):
    """The bytes are not a valid serialized message; the parser would refuse them too."""


@functools.lru_cache(maxsize=None)
def _schema(descriptor: Descriptor) -> tuple[bytes, ...]:
    """The native scanner's table for ``descriptor`` and every message type it reaches:
    entry i lists (field number, type index) of type i's message fields, by number."""
    index: dict[str, int] = {}
    fields: list[list[tuple[int, int]]] = []

    def add(message: Descriptor, key: str) -> int:
        if key in index:
            return index[key]
        index[key] = len(fields)
        fields.append([])
        own: list[tuple[int, int]] = []
        for field in message.fields:
            target = field.message_type
            if field.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP) or target is None:
                continue
            if target.GetOptions().map_entry:
                # An entry is a message, and so is its value when the map holds messages.
                value = target.fields_by_name["value"].message_type
                entry_key = target.full_name
                if entry_key not in index:
                    entry = add_entry(entry_key, value)
                else:
                    entry = index[entry_key]
                own.append((field.number, entry))
            else:
                own.append((field.number, add(target, target.full_name)))
        fields[index[key]] = sorted(own)
        return index[key]

    def add_entry(key: str, value: Descriptor | None) -> int:
        index[key] = len(fields)
        fields.append([])
        fields[index[key]] = [] if value is None else [(2, add(value, value.full_name))]
        return index[key]

    add(descriptor, descriptor.full_name)
    return tuple(b"".join(struct.pack("=Ii", number, child) for number, child in entry) for entry in fields)


def count_messages(data, descriptor: Descriptor, limit: int) -> int:
    """Messages ``data`` makes when parsed as ``descriptor`` (itself included);
    -1 once more than ``limit``. Raises MalformedProto for bad wire data."""
    status, count, offset = _protoscan.scan(data, _schema(descriptor), 0, limit)
    if status == _protoscan.TOO_MANY:
        return -1
    if status == _protoscan.MALFORMED:
        raise MalformedProto(f"malformed wire data at byte {offset} of {len(data)}")
    if status == _protoscan.TOO_DEEP:
        raise MalformedProto(f"messages nested deeper than {_protoscan.MAX_DEPTH} at byte {offset}")
    return count


class MessageBudget:
    """Running message and byte totals of one file under its ReadLimits."""

    def __init__(self, name: str, limits: ReadLimits) -> None:
        self.name = name
        self.limits = limits
        self.messages = 0
        self.parsed_bytes = 0

    def admit(self, data, descriptor: Descriptor, what: str) -> None:
        """Counts the messages ``data`` would add (parsed as ``descriptor``);
        raises ChunkedFormatError past the budget, MalformedProto for bad wire data."""
        parsed = self.parsed_bytes + len(data)
        allowed = self.limits.messages_allowed(parsed) - self.messages
        count = count_messages(data, descriptor, max(allowed, 0))
        if count < 0:
            raise ChunkedFormatError(self.name, exceeded(
                f"{what} holds more protobuf messages than its size allows "
                f"({self.limits.messages_allowed(parsed)} for {parsed} bytes parsed)"))
        self.messages += count
        self.parsed_bytes = parsed
