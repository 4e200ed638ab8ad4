"""Field paths of the chunked format: ``FieldIndex`` lists walked against a schema.

A path is a list of ``FieldIndex``: a field number, then (for a repeated field)
an element index or (for a map) a key, then the next field, and so on. The
splitter builds paths from field names; the merger resolves them against the
message descriptors and rejects anything the schema does not allow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tf_bigexport.imageformat.proto import chunk_pb2

_UINT64_MAX = (1 << 64) - 1
_INT_KEY_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SINT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SINT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_FIXED32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_UINT64: (0, _UINT64_MAX),
    FieldDescriptor.TYPE_FIXED64: (0, _UINT64_MAX),
}
_BYTES_TYPES = (FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_STRING)
# Sorts after every field number and index (both fit in 64 bits).
_MAP_KEY_MARK = 1 << 65


class PathError(ValueError):
    """A field path does not fit the message schema."""


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_repeated(field: FieldDescriptor) -> bool:
    return field.label == FieldDescriptor.LABEL_REPEATED


@dataclass(frozen=True)
class Step:
    """One field of a resolved path, with its element index or map key."""

    field: FieldDescriptor
    index: int | None = None
    key: Any = None
    has_key: bool = False

    @property
    def value_field(self) -> FieldDescriptor:
        """The field that holds what this step reaches (a map's value field for maps)."""
        return self.field.message_type.fields_by_name["value"] if self.has_key else self.field

    @property
    def target_type(self) -> Descriptor | None:
        """Message type this step reaches, or None for a scalar/bytes leaf."""
        return self.value_field.message_type

    def __str__(self) -> str:
        if self.index is not None:
            return f"{self.field.name}[{self.index}]"
        if self.has_key:
            return f"{self.field.name}[{self.key!r}]"
        return self.field.name


def build(descriptor: Descriptor, parts: Iterable[str | int]) -> list[chunk_pb2.FieldIndex]:
    """Builds a path from field names, element indices and map keys.

    ``["meta_graphs", 0, "graph_def", "node", 3, "attr", "value"]`` gives
    field 2, index 0, field 2, field 1, index 3, field 5, map key "value".
    """
    tags: list[chunk_pb2.FieldIndex] = []
    message = descriptor
    items = list(parts)
    i = 0
    while i < len(items):
        name = items[i]
        if message is None or not isinstance(name, str) or name not in message.fields_by_name:
            raise PathError(f"no field {name!r} at this point of path {items!r}")
        field = message.fields_by_name[name]
        tags.append(chunk_pb2.FieldIndex(field=field.number))
        message = field.message_type
        i += 1
        if i < len(items) and is_repeated(field):
            if is_map(field):
                key_field = field.message_type.fields_by_name["key"]
                tags.append(chunk_pb2.FieldIndex(map_key=_map_key(key_field, items[i])))
                message = field.message_type.fields_by_name["value"].message_type
            else:
                tags.append(chunk_pb2.FieldIndex(index=int(items[i])))
            i += 1
    return tags


def _map_key(key_field: FieldDescriptor, key: Any) -> chunk_pb2.FieldIndex.MapKey:
    kind = key_field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return chunk_pb2.FieldIndex.MapKey(s=key)
    if kind == FieldDescriptor.TYPE_BOOL:
        return chunk_pb2.FieldIndex.MapKey(boolean=key)
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return chunk_pb2.FieldIndex.MapKey(i32=key)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return chunk_pb2.FieldIndex.MapKey(i64=key)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return chunk_pb2.FieldIndex.MapKey(ui32=key)
    return chunk_pb2.FieldIndex.MapKey(ui64=key)


def resolve(descriptor: Descriptor, tags: Sequence[chunk_pb2.FieldIndex]) -> list[Step]:
    """Checks a path against the schema rooted at ``descriptor``; returns its steps.

    Every field must exist; an index only follows a repeated (non-map) field
    and a map key only a map field; repeated fields and maps need one; every
    step but the last must reach a message.
    """
    steps: list[Step] = []
    message: Descriptor | None = descriptor
    i = 0
    while i < len(tags):
        tag = tags[i]
        kind = tag.WhichOneof("kind")
        if kind != "field":
            what = {"index": "an index", "map_key": "a map key"}.get(kind, "an empty FieldIndex")
            raise PathError(f"{what} at position {i} does not follow a field")
        if message is None:
            raise PathError(f"field {tag.field} at position {i} follows "
                            f"'{steps[-1]}', which is not a message")
        field = message.fields_by_number.get(tag.field)
        if field is None:
            raise PathError(f"{message.full_name} has no field number {tag.field}")
        i += 1
        following = tags[i].WhichOneof("kind") if i < len(tags) else None
        if is_map(field):
            if following != "map_key":
                raise PathError(f"map field {message.full_name}.{field.name} needs a map key")
            key_field = field.message_type.fields_by_name["key"]
            step = Step(field, key=_key_value(key_field, tags[i].map_key, field), has_key=True)
            i += 1
        elif is_repeated(field):
            if following != "index":
                raise PathError(f"repeated field {message.full_name}.{field.name} needs an index")
            step = Step(field, index=tags[i].index)
            i += 1
        else:
            if following in ("index", "map_key"):
                raise PathError(f"{following.replace('_', ' ')} given for "
                                f"{message.full_name}.{field.name}, which is not "
                                f"{'repeated' if following == 'index' else 'a map'}")
            step = Step(field)
        steps.append(step)
        message = step.target_type
    return steps


def _key_value(key_field: FieldDescriptor, key: chunk_pb2.FieldIndex.MapKey, field: FieldDescriptor) -> Any:
    kind = key.WhichOneof("type")
    where = f"map {field.full_name}"
    if kind is None:
        raise PathError(f"empty map key for {where}")
    value = getattr(key, kind)
    if key_field.type == FieldDescriptor.TYPE_STRING:
        if kind != "s":
            raise PathError(f"{where} has string keys, got a {kind} key")
        return value
    if key_field.type == FieldDescriptor.TYPE_BOOL:
        if kind != "boolean":
            raise PathError(f"{where} has bool keys, got a {kind} key")
        return value
    if kind in ("s", "boolean"):
        raise PathError(f"{where} has integer keys, got a {kind} key")
    low, high = _INT_KEY_RANGES[key_field.type]
    if not low <= value <= high:
        raise PathError(f"key {value} is out of range for {where}")
    return value


def is_bytes_leaf(step: Step) -> bool:
    return step.target_type is None and step.value_field.type in _BYTES_TYPES


def merge_order_key(field: chunk_pb2.ChunkedField) -> tuple:
    """Sort key giving the order in which TensorFlow's merger applies fields.

    Lexicographic by field number / index, a path before the paths it
    prefixes, equal paths by chunk index; paths are not compared past a map
    key (those keep their listed order: sort them stably).
    """
    values: list[int] = []
    for tag in field.field_tag:
        kind = tag.WhichOneof("kind")
        if kind == "map_key":
            return (tuple(values) + (_MAP_KEY_MARK,), 0)
        values.append(tag.field if kind == "field" else tag.index)
    return (tuple(values), field.message.chunk_index)


def describe(descriptor: Descriptor, tags: Sequence[chunk_pb2.FieldIndex]) -> str:
    """Readable form of a path, e.g. ``meta_graphs[0].graph_def.node[3]``."""
    if not tags:
        return "<the message itself>"
    try:
        return ".".join(str(step) for step in resolve(descriptor, tags))
    except PathError:
        return "/".join(_raw_tag(tag) for tag in tags)


def _raw_tag(tag: chunk_pb2.FieldIndex) -> str:
    kind = tag.WhichOneof("kind")
    if kind == "field":
        return f"field {tag.field}"
    if kind == "index":
        return f"index {tag.index}"
    if kind == "map_key":
        key_kind = tag.map_key.WhichOneof("type")
        return f"key {getattr(tag.map_key, key_kind)!r}" if key_kind else "key ?"
    return "?"
