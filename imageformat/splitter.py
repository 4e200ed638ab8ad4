"""Split a SavedModel (or GraphDef) proto into chunks that each serialize under 2 GiB.

Chunking policy (applied only when the message is estimated above
``max_chunk_size``; otherwise the message stays one chunk, a plain .pb):

* Chunk 0 is the root message without the node lists and function lists of
  its graphs (``meta_graphs[i].graph_def.node`` and ``.library.function``).
* ``tensor_content`` of a node's ``attr["value"].tensor`` (Const nodes, in the
  graph and inside functions) of at least ``constant_threshold`` bytes becomes
  its own BYTES chunk at ``...node[k].attr["value"].tensor.tensor_content``;
  the node keeps dtype, shape and every other field.
* Graph nodes are packed in order into GraphDef chunks (each holding a run of
  ``node``) merged at ``graph_def``; each stays under ``max_chunk_size``.
* Functions are packed in order into FunctionDefLibrary chunks merged at
  ``graph_def.library``. A function larger than ``max_chunk_size`` goes there
  without its ``node_def`` list, which is packed into FunctionDef chunks
  merged at ``library.function[j]``.
* A single node or function shell larger than ``max_chunk_size`` gets a chunk of
  its own; only past the protobuf limit (2 GiB - 1) is that an error.

Deferred constants (``deferred_constants``: node name -> bytes, for nodes of
the message's graphs whose ``tensor_content`` was left empty, see
deferred_constants.py) are split off from those buffers as they are, or put
back into their node when the message is written whole or they are small.

All paths are absolute (the ChunkedMessage tree is flat), chunks are numbered
in the order TensorFlow's merger applies them, so the file reads front to back.
Sizes are measured piece by piece: nothing here serializes or sizes the whole
message unless it is known to be small, and large constants are never sized
through protobuf (their length comes from dtype and shape).

The input message is never modified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from google.protobuf import unknown_fields
from google.protobuf.message import Message

from tf_bigexport.imageformat import fieldpath
from tf_bigexport.imageformat.chunk_errors import ConstantTooLargeError, SplitError
from tf_bigexport.imageformat.proto import chunk_pb2, versions_pb2
from tf_bigexport.imageformat.riegeli.varint import encode_varint

Buffer = bytes | bytearray | memoryview

# Well under protobuf's 2 GiB so a chunk (and a plain .pb) always serializes and
# parses, with room for the few bytes our size estimate can miss.
DEFAULT_MAX_CHUNK_SIZE = 3 << 29  # 1.5 GiB
# Hard ceiling of one serialized protobuf message (protobuf's int32 limit).
PROTOBUF_LIMIT = (1 << 31) - 1
# Constants at least this large become BYTES chunks (capped at max_chunk_size/4).
LARGE_CONSTANT_BYTES = 1 << 20
SPLITTER_VERSION = 1
JOIN_VERSION = 0

MESSAGE = chunk_pb2.ChunkInfo.MESSAGE
BYTES = chunk_pb2.ChunkInfo.BYTES

# Bytes per element of the dtypes TensorFlow stores in tensor_content.
_DTYPE_SIZE = {
    1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2,
    15: 2, 16: 2, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8, 24: 1, 25: 1, 26: 1, 27: 1, 28: 1,
}
_LENGTH_DELIMITED = 2  # protobuf wire type of messages and bytes
_CONSTANT_CONTENT = ("attr", "value", "tensor", "tensor_content")
_GRAPH_ROOTS = {
    "tensorflow.SavedModel": "saved_model",
    "tensorflow.MetaGraphDef": "meta_graph",
    "tensorflow.GraphDef": "graph",
}


@dataclass
class PlannedChunk:
    """One chunk: its type, where it merges (absolute path) and how to make its bytes."""

    type: int
    path: list[chunk_pb2.FieldIndex]
    produce: Callable[[], bytes]
    what: str
    size_hint: int = 0  # expected bytes in the unsplit message (constants only)

    def data(self) -> bytes:
        data = self.produce()
        if self.type == MESSAGE and len(data) > PROTOBUF_LIMIT:
            raise SplitError(f"{self.what} serializes to {len(data)} bytes, past the "
                             f"protobuf limit of {PROTOBUF_LIMIT}")
        return data


@dataclass
class SplitPlan:
    """The chunks of a message (chunk 0 first) and the ChunkedMessage that merges them."""

    chunks: list[PlannedChunk]
    chunked_message: chunk_pb2.ChunkedMessage
    estimated_size: int

    @property
    def is_split(self) -> bool:
        return bool(self.chunked_message.chunked_fields)

    def iter_data(self) -> Iterator[tuple[PlannedChunk, bytes]]:
        """Produces chunk bytes one at a time, so only one large chunk is alive at once."""
        for chunk in self.chunks:
            yield chunk, chunk.data()


def constant_too_large(what: str, nbytes: int | None, limit: int = PROTOBUF_LIMIT) -> ConstantTooLargeError:
    """The error for a constant whose tensor data is past ``limit`` bytes (``nbytes``, if known)."""
    holds = f"{nbytes} bytes" if nbytes is not None else "more bytes"
    if limit >= PROTOBUF_LIMIT:
        why = (f"past protobuf's 2 GiB limit on one TensorProto ({limit} bytes). TensorFlow keeps a "
               f"constant inside the graph as one TensorProto, so no file format (image format "
               f"included) can store it")
    else:
        why = f"past the max_constant_bytes given ({limit} bytes)"
    return ConstantTooLargeError(
        f"{what} holds {holds} of tensor data, {why}. Hold the value in a tf.Variable instead "
        f"(e.g. self.table = tf.Variable(value, trainable=False)): variables are saved in the "
        f"sharded checkpoint under variables/, not in the graph. The servable form does that for "
        f"every large captured constant (imageformat.save(..., large_constants='variables'); "
        f"jobs files: format: servable or auto).")


def large_constant_bytes(max_chunk_size: int) -> int:
    """Constants at least this large get a chunk of their own (and, in the servable
    form, become checkpoint variables): 1 MiB, or a quarter of the chunk size if smaller."""
    return max(1, min(LARGE_CONSTANT_BYTES, max_chunk_size // 4))


def version_def() -> versions_pb2.VersionDef:
    return versions_pb2.VersionDef(splitter_version=SPLITTER_VERSION, join_version=JOIN_VERSION)


def split(message: Message, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE, *,
          constant_threshold: int | None = None) -> tuple[list[bytes], chunk_pb2.ChunkMetadata]:
    """Splits ``message``; returns the chunks' bytes and their ChunkMetadata (offsets 0).

    Holds every chunk in memory; ``chunked.write_saved_model_proto`` streams instead.
    """
    plan = plan_split(message, max_chunk_size, constant_threshold=constant_threshold)
    metadata = chunk_pb2.ChunkMetadata(version=version_def())
    metadata.message.CopyFrom(plan.chunked_message)
    chunks = []
    for chunk, data in plan.iter_data():
        chunks.append(data)
        metadata.chunks.add(type=chunk.type, size=len(data))
    return chunks, metadata


def plan_split(message: Message, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE, *,
               constant_threshold: int | None = None,
               max_constant_bytes: int | None = None,
               deferred_constants: Mapping[str, Buffer] | None = None) -> SplitPlan:
    """Decides the chunks of ``message`` without producing their bytes yet.

    ``deferred_constants`` maps graph node names to the tensor_content their
    node lacks (each must be found, with an empty tensor_content of that size).

    A Const whose tensor_content is past ``max_constant_bytes`` (at most, and by
    default, the protobuf limit TensorFlow's loader can parse) raises
    ConstantTooLargeError.
    """
    if max_constant_bytes is None:
        max_constant_bytes = PROTOBUF_LIMIT
    if max_chunk_size <= 0 or max_chunk_size > PROTOBUF_LIMIT:
        raise ValueError(f"max_chunk_size must be in 1..{PROTOBUF_LIMIT}, got {max_chunk_size}")
    if max_constant_bytes <= 0 or max_constant_bytes > PROTOBUF_LIMIT:
        raise ValueError(f"max_constant_bytes must be in 1..{PROTOBUF_LIMIT}, got {max_constant_bytes}")
    if constant_threshold is None:
        constant_threshold = large_constant_bytes(max_chunk_size)
    return _Planner(message, max_chunk_size, constant_threshold, max_constant_bytes,
                    deferred_constants or {}).plan()


@dataclass
class _Entry:
    """One element of a repeated message field, ready to be packed into a chunk."""

    size: int
    produce: Callable[[], bytes]
    what: str


@dataclass
class _Graph:
    base: list  # path parts from the root to the GraphDef
    graph: Message
    nodes: list[_Entry] = field(default_factory=list)
    functions: list[_Entry] = field(default_factory=list)
    # Functions too large for one chunk: (index, node_def entries).
    function_bodies: list[tuple[int, list[_Entry]]] = field(default_factory=list)

    def size(self) -> int:
        """Upper bound of the bytes the nodes and functions add (constants aside)."""
        entries = self.nodes + self.functions + [e for _, body in self.function_bodies for e in body]
        # 64: the length prefixes of the enclosing messages grow by a few bytes.
        return sum(_entry_size(e.size) for e in entries) + 64


class _Planner:
    def __init__(self, root: Message, max_chunk_size: int, constant_threshold: int, max_constant_bytes: int,
                 deferred: Mapping[str, Buffer]):
        self.root = root
        self.deferred = {name: memoryview(content).cast("B") for name, content in deferred.items()}
        self.deferred_found: set[str] = set()
        self.max = max_chunk_size
        self.threshold = constant_threshold
        self.max_constant = max_constant_bytes
        self.descriptor = root.DESCRIPTOR
        self.constants: list[PlannedChunk] = []

    def plan(self) -> SplitPlan:
        graphs = [_Graph(base, graph) for base, graph in self._graphs()]
        for g in graphs:
            self._plan_graph(g)
        missing = sorted(set(self.deferred) - self.deferred_found)
        if missing:
            raise SplitError(f"deferred constants {missing[:5]} are not nodes of the graph")
        excluded: dict = {}
        for g in graphs:
            _add_exclusion(excluded, g.base + ["node"])
            _add_exclusion(excluded, g.base + ["library", "function"])
        rest = copy_without(self.root, excluded)
        rest_size = rest.ByteSize()
        estimate = (rest_size + sum(g.size() for g in graphs)
                    + sum(c.size_hint for c in self.constants))
        root_name = self.descriptor.name
        if estimate <= self.max:
            whole = PlannedChunk(MESSAGE, [], self._serialize_whole, f"the whole {root_name}")
            return SplitPlan([whole], chunk_pb2.ChunkedMessage(chunk_index=0), estimate)
        if rest_size > PROTOBUF_LIMIT:
            raise SplitError(f"{root_name} without its graph nodes and functions is still "
                             f"{rest_size} bytes, past the protobuf limit; nothing else can be split")
        chunks = [PlannedChunk(MESSAGE, [], lambda: rest.SerializeToString(deterministic=True),
                               f"{root_name} (chunk 0: all but graph nodes and functions)")]
        for g in graphs:
            chunks += self._slices(g.base, "node", g.nodes, "graph nodes")
            chunks += self._slices(g.base + ["library"], "function", g.functions, "functions")
            for j, body in g.function_bodies:
                chunks += self._slices(g.base + ["library", "function", j], "node_def", body,
                                       f"nodes of function {g.graph.library.function[j].signature.name!r}")
        chunks += self.constants
        return _ordered_plan(chunks, estimate)

    def _serialize_whole(self) -> bytes:
        if not self.deferred:
            return self.root.SerializeToString(deterministic=True)
        whole = type(self.root)()
        whole.CopyFrom(self.root)
        for _, graph in _graphs_of(whole):
            for node in graph.node:
                content = self.deferred.get(node.name)
                if content is not None:
                    node.attr["value"].tensor.tensor_content = content.tobytes()
        return whole.SerializeToString(deterministic=True)

    def _graphs(self) -> Iterator[tuple[list, Message]]:
        return _graphs_of(self.root)

    def _plan_graph(self, g: _Graph) -> None:
        for k, node in enumerate(g.graph.node):
            deferred = self.deferred.get(node.name)
            if deferred is None:
                g.nodes.append(self._node_entry(node, g.base + ["node", k]))
            else:
                g.nodes.append(self._deferred_entry(node, g.base + ["node", k], deferred))
        for j, function in enumerate(g.graph.library.function):
            name = function.signature.name
            body = [self._node_entry(node, g.base + ["library", "function", j, "node_def", k],
                                     f" in function {name!r}")
                    for k, node in enumerate(function.node_def)]
            shell = copy_without(function, {"node_def": True})
            shell_bytes = shell.SerializeToString(deterministic=True)
            node_def_number = function.DESCRIPTOR.fields_by_name["node_def"].number
            body_size = sum(_entry_size(e.size) for e in body)
            what = f"function {name!r}"
            if len(shell_bytes) > PROTOBUF_LIMIT:
                raise SplitError(f"{what} without its nodes is {len(shell_bytes)} bytes, past the "
                                 f"protobuf limit of {PROTOBUF_LIMIT}")
            if len(shell_bytes) + body_size <= self.max:
                g.functions.append(_Entry(len(shell_bytes) + body_size,
                                          _joined(shell_bytes, node_def_number, body), what))
            else:
                g.functions.append(_Entry(len(shell_bytes), lambda b=shell_bytes: b, what))
                g.function_bodies.append((j, body))

    def _node_entry(self, node: Message, parts: list, where: str = "") -> _Entry:
        what = f"node {node.name!r} (op {node.op}){where}"
        content = _constant_content(node)
        if content is not None and content[1] > self.max_constant:
            raise constant_too_large(f"Const {what}", content[1], self.max_constant)
        if content is not None and content[1] >= self.threshold:
            tensor, size = content
            stripped = copy_without(node, _nested_exclusion(_CONSTANT_CONTENT))
            self.constants.append(PlannedChunk(
                BYTES, fieldpath.build(self.descriptor, parts + list(_CONSTANT_CONTENT)),
                lambda t=tensor: t.tensor_content, f"constant of {what}", _entry_size(size)))
            entry = _Entry(stripped.ByteSize(),
                           lambda m=stripped: m.SerializeToString(deterministic=True), what)
        else:
            entry = _Entry(node.ByteSize(), lambda m=node: m.SerializeToString(deterministic=True), what)
        if entry.size > PROTOBUF_LIMIT:
            raise SplitError(f"{what} is {entry.size} bytes, past the protobuf limit of "
                             f"{PROTOBUF_LIMIT}; only a tensor_content constant can be split off")
        return entry

    def _deferred_entry(self, node: Message, parts: list, content: memoryview) -> _Entry:
        """A node whose tensor_content is ``content``, held outside the message."""
        what = f"node {node.name!r} (op {node.op})"
        found = _constant_content(node)
        if (found is None or found[1] != len(content) or found[0].tensor_content
                or node.name in self.deferred_found):
            raise SplitError(f"deferred constant for {what}: the node is not a constant of "
                             f"{len(content)} bytes with an empty tensor_content")
        self.deferred_found.add(node.name)
        if len(content) > self.max_constant:
            raise constant_too_large(f"Const {what}", len(content), self.max_constant)
        if len(content) >= self.threshold:
            self.constants.append(PlannedChunk(
                BYTES, fieldpath.build(self.descriptor, parts + list(_CONSTANT_CONTENT)),
                lambda c=content: c, f"constant of {what}", _entry_size(len(content))))
            return _Entry(node.ByteSize(), lambda m=node: m.SerializeToString(deterministic=True), what)
        filled = type(node)()
        filled.CopyFrom(node)
        filled.attr["value"].tensor.tensor_content = content.tobytes()
        return _Entry(filled.ByteSize(), lambda m=filled: m.SerializeToString(deterministic=True), what)

    def _slices(self, parts: list, field_name: str, entries: Sequence[_Entry], what: str) -> list[PlannedChunk]:
        """Packs entries in order into chunks of at most max_chunk_size (one entry may exceed)."""
        if not entries:
            return []
        container = _descriptor_at(self.descriptor, parts)
        number = container.fields_by_name[field_name].number
        path = fieldpath.build(self.descriptor, parts)
        runs: list[list[_Entry]] = [[]]
        size = 0
        for entry in entries:
            grown = size + _entry_size(entry.size)
            if runs[-1] and grown > self.max:
                runs.append([])
                grown = _entry_size(entry.size)
            runs[-1].append(entry)
            size = grown
        return [PlannedChunk(MESSAGE, list(path), _joined(b"", number, run),
                             f"{what} {run[0].what}..{run[-1].what}")
                for run in runs]


def _graphs_of(root: Message) -> Iterator[tuple[list, Message]]:
    """The GraphDefs in ``root`` with their paths from it."""
    kind = _GRAPH_ROOTS.get(root.DESCRIPTOR.full_name)
    if kind == "graph":
        yield [], root
    elif kind == "meta_graph":
        if root.HasField("graph_def"):
            yield ["graph_def"], root.graph_def
    elif kind == "saved_model":
        for i, meta_graph in enumerate(root.meta_graphs):
            if meta_graph.HasField("graph_def"):
                yield ["meta_graphs", i, "graph_def"], meta_graph.graph_def


def _ordered_plan(chunks: list[PlannedChunk], estimate: int) -> SplitPlan:
    """Numbers chunks in TensorFlow's merge order so the file reads front to back."""
    fields = []
    for provisional, chunk in enumerate(chunks[1:], start=1):
        cf = chunk_pb2.ChunkedField(field_tag=chunk.path)
        cf.message.chunk_index = provisional
        fields.append((cf, chunk))
    fields.sort(key=lambda item: fieldpath.merge_order_key(item[0]))
    root = chunk_pb2.ChunkedMessage(chunk_index=0)
    ordered = [chunks[0]]
    for number, (cf, chunk) in enumerate(fields, start=1):
        cf.message.chunk_index = number
        root.chunked_fields.append(cf)
        ordered.append(chunk)
    return SplitPlan(ordered, root, estimate)


def _constant_content(node: Message) -> tuple[Message, int] | None:
    """The node's attr["value"].tensor and its tensor_content length (from dtype x shape).

    Reading tensor_content would copy it and sizing it through protobuf would
    serialize it, so the length is computed; None when the values are not (all)
    in tensor_content or the dtype is not fixed-size.
    """
    if "value" not in node.attr:
        return None
    value = node.attr["value"]
    if value.WhichOneof("value") != "tensor":
        return None
    tensor = value.tensor
    item_size = _DTYPE_SIZE.get(tensor.dtype)
    if item_size is None or tensor.tensor_shape.unknown_rank:
        return None
    for f in tensor.DESCRIPTOR.fields:
        if f.name.endswith("_val") and fieldpath.is_repeated(f) and len(getattr(tensor, f.name)):
            return None
    dims = [d.size for d in tensor.tensor_shape.dim]
    if any(d < 0 for d in dims):
        return None
    return tensor, math.prod(dims) * item_size


def copy_without(message: Message, excluded: dict) -> Message:
    """A copy of ``message`` leaving out the fields named in the ``excluded`` tree.

    ``excluded`` maps a field name to True (leave it out) or to a nested tree
    (for a singular message), or for repeated fields and maps to a dict from
    index / key to a nested tree. Excluded fields are never read, so a large
    bytes field costs nothing.
    """
    copy = type(message)()
    _copy_into(message, copy, excluded)
    return copy


def _copy_into(src: Message, dst: Message, excluded: dict) -> None:
    unknown = _unknown_fields(src)
    if unknown:  # fields of a newer schema: kept so the merged message is unchanged
        dst.MergeFromString(unknown)
    for f in src.DESCRIPTOR.fields:
        rule = excluded.get(f.name)
        if rule is True:
            continue
        name = f.name
        if fieldpath.is_map(f):
            src_map, dst_map = getattr(src, name), getattr(dst, name)
            value_is_message = f.message_type.fields_by_name["value"].message_type is not None
            for key in src_map:
                if value_is_message:
                    if rule is not None and key in rule:
                        _copy_into(src_map[key], dst_map[key], rule[key])
                    else:
                        dst_map[key].CopyFrom(src_map[key])
                else:
                    dst_map[key] = src_map[key]
        elif fieldpath.is_repeated(f):
            src_list = getattr(src, name)
            if f.message_type is None or rule is None:
                getattr(dst, name).extend(src_list)
            else:
                dst_list = getattr(dst, name)
                for i, item in enumerate(src_list):
                    target = dst_list.add()
                    if i in rule:
                        _copy_into(item, target, rule[i])
                    else:
                        target.CopyFrom(item)
        elif f.message_type is not None:
            if src.HasField(name):
                target = getattr(dst, name)
                if rule is None:
                    target.CopyFrom(getattr(src, name))
                else:
                    target.SetInParent()
                    _copy_into(getattr(src, name), target, rule)
        elif f.has_presence:
            if src.HasField(name):
                setattr(dst, name, getattr(src, name))
        else:
            value = getattr(src, name)
            # Without presence a field is written when not zero; -0.0 counts as set.
            if value or (isinstance(value, float) and math.copysign(1.0, value) < 0):
                setattr(dst, name, value)


def _unknown_fields(message: Message) -> bytes:
    """Re-encodes the fields ``message`` kept without knowing them."""
    return b"".join(_encode_unknown(field) for field in unknown_fields.UnknownFieldSet(message))


def _encode_unknown(field) -> bytes:
    number, wire_type, data = field.field_number, field.wire_type, field.data
    tag = encode_varint((number << 3) | wire_type)
    if wire_type == 0:
        return tag + encode_varint(data)
    if wire_type == 1:
        return tag + data.to_bytes(8, "little")
    if wire_type == _LENGTH_DELIMITED:
        return tag + encode_varint(len(data)) + data
    if wire_type == 5:
        return tag + data.to_bytes(4, "little")
    # 3: a group, closed by an end-group tag (wire type 4).
    return tag + b"".join(_encode_unknown(inner) for inner in data) + encode_varint((number << 3) | 4)


def _add_exclusion(tree: dict, parts: list) -> None:
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = True


def _nested_exclusion(parts: Sequence) -> dict:
    tree: dict = {}
    _add_exclusion(tree, list(parts))
    return tree


def _descriptor_at(descriptor, parts: list):
    for part in parts:
        if isinstance(part, str):
            f = descriptor.fields_by_name[part]
            descriptor = f.message_type
            if fieldpath.is_map(f):
                descriptor = descriptor.fields_by_name["value"].message_type
    return descriptor


def _entry_size(size: int) -> int:
    """Bytes one length-delimited element of ``size`` takes (tag of up to 2 bytes)."""
    return 2 + len(encode_varint(size)) + size


def _joined(prefix: bytes, field_number: int, entries: Sequence[_Entry]) -> Callable[[], bytes]:
    """Encodes ``prefix`` followed by each entry as element of repeated field ``field_number``.

    Concatenated encodings parse as one message, so a run of nodes becomes a
    GraphDef (or FunctionDef, FunctionDefLibrary) chunk without copying the
    nodes into a new message first.
    """
    tag = encode_varint((field_number << 3) | _LENGTH_DELIMITED)

    def produce() -> bytes:
        pieces = [prefix]
        for entry in entries:
            data = entry.produce()
            pieces += (tag, encode_varint(len(data)), data)
        return b"".join(pieces)

    return produce
