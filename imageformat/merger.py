"""Merge chunks back into one message, as TensorFlow's merger (merge.cc) does.

Semantics (those of TensorFlow's ``Merger::ReadFields``):

* A ChunkedMessage first merges its own chunk (``chunk_index``, if set) into
  the message, then applies its chunked fields sorted in TensorFlow's order
  (by field number / index, a path before longer paths it prefixes, equal paths
  by chunk index; paths are not compared past a map key).
* A chunked field's path walks from that message, creating what is missing:
  a repeated element may be appended (index == current size) but never skip
  ahead; a map entry is created for a new key.
* At the end of the path a message field receives the nested ChunkedMessage
  (its chunk is merged in, then its own fields); a bytes/string field is set to
  the chunk's bytes; an empty path merges the chunk into the message itself.

Before any data is read the whole ChunkedMessage tree is checked: chunk
indices in range and each used once, every path valid in the schema, chunk
types matching their targets. Problems raise ChunkedFormatError naming the
source and the path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, TypeVar, Union

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from tf_bigexport.imageformat import fieldpath
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.proto import chunk_pb2
from tf_bigexport.imageformat.protoscan import MalformedProto

JOIN_VERSION = 0
MESSAGE = chunk_pb2.ChunkInfo.MESSAGE
BYTES = chunk_pb2.ChunkInfo.BYTES
_TYPE_NAMES = {MESSAGE: "MESSAGE", BYTES: "BYTES", chunk_pb2.ChunkInfo.UNSET: "UNSET"}
# Deeper ChunkedMessage nesting than protobuf itself parses (100) is malformed.
_MAX_DEPTH = 100

M = TypeVar("M", bound=Message)
Chunk = Union[bytes, bytearray, memoryview, Message]


class ChunkSource(Protocol):
    """Where chunks come from: memory or a .cpb file."""

    name: str

    def __len__(self) -> int: ...

    def chunk_type(self, index: int) -> int | None:
        """ChunkInfo.Type of a chunk, or None when unknown (no metadata)."""

    def read(self, index: int) -> Chunk: ...


class MemoryChunks:
    """Chunks held in memory, as ``splitter.split`` returns them."""

    def __init__(self, chunks: Sequence[Chunk], infos: Sequence[chunk_pb2.ChunkInfo] | None = None,
                 name: str = "<chunks>"):
        self.name = name
        self._chunks = chunks
        self._types = [info.type for info in infos] if infos else None
        if self._types is not None and len(self._types) != len(chunks):
            raise ChunkedFormatError(name, f"metadata lists {len(self._types)} chunks "
                                           f"but {len(chunks)} were given")

    def __len__(self) -> int:
        return len(self._chunks)

    def chunk_type(self, index: int) -> int | None:
        if self._types is not None:
            return self._types[index]
        return MESSAGE if isinstance(self._chunks[index], Message) else None

    def read(self, index: int) -> Chunk:
        return self._chunks[index]


def merge(chunks: Sequence[Chunk] | ChunkSource,
          metadata: chunk_pb2.ChunkMetadata | chunk_pb2.ChunkedMessage,
          message_type: type[M] | None = None, *,
          skip_large_constants: bool = False,
          graph_constants: dict[str, Chunk] | None = None) -> M:
    """Rebuilds the message that ``chunks`` and ``metadata`` describe.

    ``chunks`` is a list (bytes or messages, e.g. from ``splitter.split``) or a
    ChunkSource such as ``chunked.ChunkedFile``. ``message_type`` defaults to
    SavedModel. ``skip_large_constants`` leaves every tensor_content filled by
    a BYTES chunk empty (dtype and shape stay) and does not read those chunks.
    ``graph_constants`` (a SavedModel's, or a dict to fill): the tensor_content
    BYTES chunks of top-level graph nodes (``meta_graphs[i].graph_def.node[k]``)
    are left out of the message and put there instead, under the node's name,
    as read (no copy into the message).
    """
    if message_type is None:
        from tensorflow.core.protobuf import saved_model_pb2  # heavy import, only when needed
        message_type = saved_model_pb2.SavedModel
    if isinstance(metadata, chunk_pb2.ChunkMetadata):
        source = chunks if _is_source(chunks) else MemoryChunks(chunks, metadata.chunks or None)
        check_version(metadata, source.name)
        root = metadata.message
    else:
        source = chunks if _is_source(chunks) else MemoryChunks(chunks)
        root = metadata
    return _Merger(source, skip_large_constants, graph_constants).run(root, message_type)


def check(source: ChunkSource, metadata: chunk_pb2.ChunkMetadata, message_type: type[M] | None = None) -> None:
    """What ``merge`` checks and reads, without building the message: the tree,
    every chunk (read once, then dropped) and, when the source has a message
    budget, the message count of every message chunk at its place in the schema."""
    if message_type is None:
        from tensorflow.core.protobuf import saved_model_pb2  # heavy import, only when needed
        message_type = saved_model_pb2.SavedModel
    check_version(metadata, source.name)
    _Merger(source, False).check(metadata.message, message_type)


def check_version(metadata: chunk_pb2.ChunkMetadata, name: str) -> None:
    if metadata.version.join_version > JOIN_VERSION:
        raise ChunkedFormatError(name, f"written for merger version {metadata.version.join_version}; "
                                       f"this reader merges version {JOIN_VERSION}")


def _is_source(chunks) -> bool:
    return hasattr(chunks, "chunk_type") and hasattr(chunks, "read")


@dataclass
class _Field:
    """A validated chunked field: its steps, and what fills the end of the path."""

    label: str
    steps: list[fieldpath.Step]
    chunk: int | None = None  # BYTES leaf or empty path: the chunk to read
    nested: "_Plan | None" = None  # message leaf: what to merge into it


@dataclass
class _Plan:
    label: str
    chunk: int | None
    fields: list[_Field] = field(default_factory=list)


class _Merger:
    def __init__(self, source: ChunkSource, skip_large_constants: bool,
                 graph_constants: dict[str, Chunk] | None = None):
        self.source = source
        self.skip_large_constants = skip_large_constants
        self.graph_constants = graph_constants
        self.held_out: dict[tuple[int, int], Chunk] = {}  # (meta graph, node) -> tensor_content
        self.count = len(source)
        self.used: dict[int, str] = {}

    def fail(self, problem: str) -> ChunkedFormatError:
        return ChunkedFormatError(self.source.name, problem)

    def check(self, root: chunk_pb2.ChunkedMessage, message_type: type[M]) -> None:
        plan = self._compile(root, message_type.DESCRIPTOR, message_type.DESCRIPTOR.name, 0)
        pending = [(plan, message_type.DESCRIPTOR)]
        while pending:
            plan, descriptor = pending.pop()
            if plan.chunk is not None:
                self._read_message_chunk(plan.chunk, descriptor, plan.label)
            for f in plan.fields:
                if f.nested is not None:
                    pending.append((f.nested, f.steps[-1].target_type))
                elif not f.steps:
                    self._read_message_chunk(f.chunk, descriptor, f.label)
                else:
                    self.source.read(f.chunk)

    def _read_message_chunk(self, index: int, descriptor: Descriptor, label: str):
        data = self.source.read(index)
        budget = getattr(self.source, "budget", None)
        if budget is not None and not isinstance(data, Message):
            try:
                budget.admit(data, descriptor, f"chunk {index} ({label})")
            except MalformedProto as e:
                raise self.fail(f"chunk {index} ({label}) is not a valid {descriptor.full_name}: {e}") from None
        return data

    def run(self, root: chunk_pb2.ChunkedMessage, message_type: type[M]) -> M:
        plan = self._compile(root, message_type.DESCRIPTOR, message_type.DESCRIPTOR.name, 0)
        message = message_type()
        if self.graph_constants is not None and message_type.DESCRIPTOR.full_name != _SAVED_MODEL:
            self.graph_constants = None
        self._apply(plan, message)
        for (meta_graph, node), data in self.held_out.items():
            self.graph_constants[message.meta_graphs[meta_graph].graph_def.node[node].name] = data
        return message

    # ---- checking the ChunkedMessage tree (no chunk data read) ----

    def _compile(self, cm: chunk_pb2.ChunkedMessage, descriptor: Descriptor, label: str, depth: int) -> _Plan:
        if depth > _MAX_DEPTH:
            raise self.fail(f"chunked message nesting deeper than {_MAX_DEPTH} at {label}")
        chunk = None
        if cm.HasField("chunk_index"):
            chunk = self._claim(cm.chunk_index, label, MESSAGE)
        plan = _Plan(label, chunk)
        for cf in sorted(cm.chunked_fields, key=fieldpath.merge_order_key):
            plan.fields.append(self._compile_field(cf, descriptor, label, depth))
        return plan

    def _compile_field(self, cf: chunk_pb2.ChunkedField, descriptor: Descriptor, parent: str,
                       depth: int) -> _Field:
        tags = list(cf.field_tag)
        try:
            steps = fieldpath.resolve(descriptor, tags)
        except fieldpath.PathError as e:
            raise self.fail(f"bad field path {fieldpath.describe(descriptor, tags)} in {parent}: {e}") from None
        label = f"{parent}.{'.'.join(str(s) for s in steps)}" if steps else parent
        nested = cf.message
        if steps and steps[-1].target_type is not None:
            return _Field(label, steps, nested=self._compile(nested, steps[-1].target_type, label, depth + 1))
        if steps and not fieldpath.is_bytes_leaf(steps[-1]):
            kind = steps[-1].value_field.type
            raise self.fail(f"{label} is a scalar field (type {kind}); chunks can only fill "
                            f"messages, bytes and strings")
        # Empty path (chunk merges into the message itself) or a bytes/string leaf.
        if not nested.HasField("chunk_index"):
            raise self.fail(f"chunked field for {label} names no chunk")
        if nested.chunked_fields:
            raise self.fail(f"chunked field for {label} has nested fields, "
                            f"which {'a merged chunk' if not steps else 'a bytes field'} cannot take")
        wanted = BYTES if steps else MESSAGE
        return _Field(label, steps, chunk=self._claim(nested.chunk_index, label, wanted))

    def _claim(self, index: int, label: str, wanted: int) -> int:
        if index >= self.count:
            raise self.fail(f"{label} refers to chunk {index}, but there are only {self.count} chunks")
        if index in self.used:
            raise self.fail(f"chunk {index} is used twice: by {self.used[index]} and by {label}")
        actual = self.source.chunk_type(index)
        if actual is not None and actual != wanted:
            raise self.fail(f"chunk {index} is {_TYPE_NAMES.get(actual, actual)} but {label} "
                            f"needs {_TYPE_NAMES[wanted]}")
        self.used[index] = label
        return index

    # ---- applying chunks ----

    def _apply(self, plan: _Plan, message: Message) -> None:
        if plan.chunk is not None:
            self._merge_chunk(plan.chunk, message, plan.label)
        for f in plan.fields:
            if not f.steps:
                self._merge_chunk(f.chunk, message, f.label)
                continue
            parent = message
            for step in f.steps[:-1]:
                parent = self._descend(parent, step, f.label)
            if f.nested is not None:
                self._apply(f.nested, self._descend(parent, f.steps[-1], f.label))
            elif self.graph_constants is not None and _is_graph_constant(f.steps):
                self.held_out[(f.steps[0].index, f.steps[2].index)] = self.source.read(f.chunk)
            else:
                self._set_bytes(parent, f.steps[-1], f.chunk, f.label)

    def _merge_chunk(self, index: int, message: Message, label: str) -> None:
        data = self._read_message_chunk(index, message.DESCRIPTOR, label)
        if isinstance(data, Message):
            if data.DESCRIPTOR is not message.DESCRIPTOR:
                raise self.fail(f"chunk {index} is a {data.DESCRIPTOR.full_name} but {label} "
                                f"is a {message.DESCRIPTOR.full_name}")
            message.MergeFrom(data)
            return
        try:
            message.MergeFromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:
            raise self.fail(f"chunk {index} ({label}) is not a valid "
                            f"{message.DESCRIPTOR.full_name}: {e}") from None

    def _descend(self, parent: Message, step: fieldpath.Step, label: str) -> Message:
        container = getattr(parent, step.field.name)
        if step.index is not None:
            size = len(container)
            if step.index < size:
                return container[step.index]
            if step.index == size:
                return container.add()
            raise self.fail(f"{label}: index {step.index} of {step.field.name} is past its "
                            f"end ({size} elements); elements must be filled in order")
        if step.has_key:
            return container[step.key]
        container.SetInParent()
        return container

    def _set_bytes(self, parent: Message, step: fieldpath.Step, index: int, label: str) -> None:
        if self.skip_large_constants and _is_tensor_content(step.field):
            return
        data = self.source.read(index)
        if isinstance(data, Message):
            raise self.fail(f"chunk {index} is a message but {label} takes bytes")
        if step.value_field.type == FieldDescriptor.TYPE_STRING:
            try:
                value = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail(f"chunk {index} for string field {label} is not UTF-8") from None
        else:
            value = data if isinstance(data, bytes) else bytes(data)
        name = step.field.name
        if step.index is not None:
            container = getattr(parent, name)
            if step.index >= len(container):
                raise self.fail(f"{label}: index {step.index} of {name} is past its end "
                                f"({len(container)} elements)")
            container[step.index] = value
        elif step.has_key:
            getattr(parent, name)[step.key] = value
        else:
            setattr(parent, name, value)


_SAVED_MODEL = "tensorflow.SavedModel"
_GRAPH_CONSTANT_PATH = ("meta_graphs", "graph_def", "node", "attr", "tensor", "tensor_content")


def _is_graph_constant(steps: list[fieldpath.Step]) -> bool:
    """Whether a SavedModel path is meta_graphs[i].graph_def.node[k].attr["value"].tensor.tensor_content."""
    return (tuple(step.field.name for step in steps) == _GRAPH_CONSTANT_PATH
            and steps[0].index is not None and steps[2].index is not None
            and steps[3].has_key and steps[3].key == "value")


def _is_tensor_content(f: FieldDescriptor) -> bool:
    return f.name == "tensor_content" and f.containing_type.full_name == "tensorflow.TensorProto"
