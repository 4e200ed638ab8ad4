"""Chunked proto files (saved_model.cpb): writing a split plan, reading it back.

A .cpb is a Riegeli/records file with one record per chunk, in chunk order,
and a last record holding the serialized ChunkMetadata (chunk types, sizes,
numeric record positions and the ChunkedMessage tree).
"""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, BinaryIO, Callable, Mapping

from google.protobuf.message import DecodeError, Message

from tf_bigexport.imageformat import merger, program_files, splitter
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError, ProgramTooLargeError
from tf_bigexport.imageformat.limits import MAX_PB_BYTES, ReadLimits
from tf_bigexport.imageformat.proto import chunk_pb2
from tf_bigexport.imageformat.protoscan import MalformedProto, MessageBudget
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter, RiegeliError
from tf_bigexport.local_files import replacing
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB, SAVED_MODEL_PB, SAVED_MODEL_PBTXT

if TYPE_CHECKING:
    from tensorflow.core.protobuf import saved_model_pb2

DEFAULT_MAX_CHUNK_SIZE = splitter.DEFAULT_MAX_CHUNK_SIZE

# progress(bytes just written, expected total bytes of the file). The total is
# the splitter's estimate until the last call, which gives the file's size.
WriteProgress = Callable[[int, int], None]


def write_saved_model_proto(saved_model: "saved_model_pb2.SavedModel", export_dir: str | os.PathLike, *,
                            max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
                            compression: str = "none",
                            max_constant_bytes: int | None = None,
                            deferred_constants: Mapping[str, splitter.Buffer] | None = None,
                            progress: WriteProgress | None = None,
                            plain_only: bool = False) -> str:
    """Writes ``saved_model`` into ``export_dir``; returns the path written.

    ``saved_model.cpb`` when the proto is estimated above ``max_chunk_size``
    (default 1.5 GiB), else a plain ``saved_model.pb`` (deterministic
    serialization), as TensorFlow does. The file appears atomically (written
    under a temporary name, then renamed). Program files of an earlier model
    (saved_model.pb/.pbtxt/.cpb) are removed first, so a failed write leaves
    no program file rather than an old one beside new variables, and a stale
    .pb never shadows a new .cpb. Write errors name the file.
    ``saved_model`` is not modified. ``deferred_constants``: see splitter.plan_split.
    ``progress``: called as bytes reach the file (see WriteProgress).
    ``plain_only``: raise ProgramTooLargeError, writing nothing, instead of
    writing a .cpb (the servable form must be a plain saved_model.pb).
    """
    export_dir = os.fspath(export_dir)
    _check_compression(compression)
    plan = splitter.plan_split(saved_model, max_chunk_size, max_constant_bytes=max_constant_bytes,
                               deferred_constants=deferred_constants)
    if plain_only and plan.is_split:
        raise ProgramTooLargeError(f"the program proto is about {plan.estimated_size} bytes, past the "
                                   f"{max_chunk_size} bytes a plain {SAVED_MODEL_PB} may hold here")
    try:
        os.makedirs(export_dir, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the export directory {export_dir}: "
                                   f"{error.strerror or error}") from error
    for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT, SAVED_MODEL_CPB):
        stale = os.path.join(export_dir, name)
        if os.path.lexists(stale):
            os.remove(stale)
    if plan.is_split:
        path = os.path.join(export_dir, SAVED_MODEL_CPB)
        _write_atomically(path, lambda f: write_chunked(f, plan, compression=compression, progress=progress))
    else:
        path = os.path.join(export_dir, SAVED_MODEL_PB)
        _write_atomically(path, lambda f: _write_whole(f, plan, progress))
    return path


def read_saved_model(export_dir: str | os.PathLike, *,
                     skip_large_constants: bool = False,
                     graph_constants: dict | None = None,
                     limits: ReadLimits | None = None) -> "saved_model_pb2.SavedModel":
    """Reads the SavedModel proto of ``export_dir``: .pb, else .pbtxt, else .cpb (merged).

    The preference is the one of TensorFlow's Python loader (and of
    ``imageformat.load``). ``skip_large_constants`` (.cpb only) leaves the
    tensor_content of constants stored as separate chunks empty and does not
    read them: enough to inspect signatures and the graph structure.
    ``graph_constants`` (.cpb only): see merger.merge. The file is read under
    ``limits`` (default: derived from its size, see limits.py); FIFOs, devices
    and other special files are refused (program_files).
    """
    from tensorflow.core.protobuf import saved_model_pb2  # heavy import, only when needed

    export_dir = os.fspath(export_dir)
    pb = os.path.join(export_dir, SAVED_MODEL_PB)
    pbtxt = os.path.join(export_dir, SAVED_MODEL_PBTXT)
    cpb = os.path.join(export_dir, SAVED_MODEL_CPB)
    if os.path.lexists(pb):
        return program_files.read_pb(pb, limits)
    if os.path.lexists(pbtxt):
        from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
        text = program_files.read_regular(pbtxt, MAX_PB_BYTES, "a text protobuf")
        try:
            return text_format.Parse(text.decode("utf-8"), saved_model_pb2.SavedModel())
        except (text_format.ParseError, UnicodeDecodeError) as e:
            raise ChunkedFormatError(pbtxt, f"not a valid SavedModel: {e}") from None
    if os.path.lexists(cpb):
        return read_chunked(cpb, saved_model_pb2.SavedModel, skip_large_constants=skip_large_constants,
                            graph_constants=graph_constants, limits=limits)
    raise FileNotFoundError(f"{export_dir}: no {SAVED_MODEL_PB}, {SAVED_MODEL_PBTXT} or {SAVED_MODEL_CPB}")


def write_chunked(dest: str | os.PathLike | BinaryIO, plan: splitter.SplitPlan, *,
                  compression: str = "none", progress: WriteProgress | None = None) -> chunk_pb2.ChunkMetadata:
    """Writes a split plan as a Riegeli file (path or binary file); returns its metadata.

    Chunks are produced one at a time, so only one large chunk is in memory.
    ``progress``: see WriteProgress; called when whole Riegeli chunks reach
    the file (about every MiB), not once per record.
    """
    metadata = chunk_pb2.ChunkMetadata(version=splitter.version_def())
    metadata.message.CopyFrom(plan.chunked_message)
    reported = 0
    with RecordWriter(dest, compression=compression) as writer:
        for chunk, data in plan.iter_data():
            position = writer.write_record(data)
            metadata.chunks.add(type=chunk.type, size=len(data), offset=position)
            del data
            if progress is not None and writer.position > reported:
                # Riegeli framing makes the file a little larger than the estimate.
                progress(writer.position - reported, max(plan.estimated_size, writer.position))
                reported = writer.position
        writer.write_record(metadata.SerializeToString(deterministic=True))
    if progress is not None:
        progress(writer.position - reported, writer.position)
    return metadata


def _write_whole(f: BinaryIO, plan: splitter.SplitPlan, progress: WriteProgress | None) -> None:
    data = plan.chunks[0].data()
    f.write(data)
    if progress is not None:
        progress(len(data), len(data))


def read_chunked(src: str | os.PathLike | BinaryIO, message_type: type[Message], *,
                 skip_large_constants: bool = False, graph_constants: dict | None = None,
                 limits: ReadLimits | None = None) -> Message:
    """Merges the chunked proto file ``src`` (path or binary file) into a new ``message_type``."""
    with ChunkedFile(src, limits=limits) as chunked_file:
        return merger.merge(chunked_file, chunked_file.metadata, message_type,
                            skip_large_constants=skip_large_constants, graph_constants=graph_constants)


def check_chunked(src: str | os.PathLike | BinaryIO, message_type: type[Message] | None = None, *,
                  limits: ReadLimits | None = None) -> None:
    """Reads a chunked proto file the way a merge would, without building the message:
    the ChunkedMessage tree is checked, every chunk read (hashes, sizes) and every
    message chunk's message count taken. Raises what read_chunked would."""
    with ChunkedFile(src, limits=limits) as chunked_file:
        merger.check(chunked_file, chunked_file.metadata, message_type)


class ChunkedFile:
    """An open .cpb: its ChunkMetadata, and its chunks by index (a merger.ChunkSource).

    ``budget`` counts the protobuf messages parsed from the file (its
    ChunkMetadata here, its message chunks in the merger) under ``limits``.
    """

    def __init__(self, src: str | os.PathLike | BinaryIO, *, name: str | None = None,
                 limits: ReadLimits | None = None):
        if isinstance(src, (str, os.PathLike)):
            self.name = name or os.fspath(src)
            src = self.name
        else:
            self.name = name or str(getattr(src, "name", "<stream>"))
        try:
            self._reader = RecordReader(src, name=self.name, limits=limits)
        except RiegeliError as e:
            raise ChunkedFormatError(self.name, f"not a Riegeli/records file: {e.reason}") from None
        self.budget = MessageBudget(self.name, self._reader.limits)
        try:
            self.metadata = self._read_metadata()
        except BaseException:
            self._reader.close()
            raise

    def _read_metadata(self) -> chunk_pb2.ChunkMetadata:
        try:
            data = self._reader.read_last_record()
        except RiegeliError as e:
            raise ChunkedFormatError(self.name, f"cannot read the ChunkMetadata (last record): "
                                                f"{_where(e)}{e.reason}") from None
        metadata = chunk_pb2.ChunkMetadata()
        try:
            self.budget.admit(data, chunk_pb2.ChunkMetadata.DESCRIPTOR, "the ChunkMetadata (last record)")
            metadata.ParseFromString(data)
        except (DecodeError, MalformedProto) as e:
            raise ChunkedFormatError(self.name, f"last record is not a ChunkMetadata: {e}") from None
        merger.check_version(metadata, self.name)
        return metadata

    def __len__(self) -> int:
        return len(self.metadata.chunks)

    def chunk_type(self, index: int) -> int:
        return self.metadata.chunks[index].type

    def read(self, index: int) -> bytes:
        info = self.metadata.chunks[index]
        try:
            data = self._reader.read_record_at(info.offset)
        except RiegeliError as e:
            raise ChunkedFormatError(self.name, f"chunk {index} (record position {info.offset}): "
                                                f"{_where(e)}{e.reason}") from None
        if len(data) != info.size:
            raise ChunkedFormatError(self.name, f"chunk {index} (record position {info.offset}) has "
                                                f"{len(data)} bytes but the metadata says {info.size}")
        return data

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> ChunkedFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _check_compression(compression: str) -> None:
    """Rejects an unknown compression now, not only once a model needs splitting."""
    RecordWriter(io.BytesIO(), compression=compression).close()


def _where(error: RiegeliError) -> str:
    return f"at byte {error.offset}: " if error.offset is not None else ""


def _write_atomically(path: str, write) -> None:
    """Writes through ``write(file)`` into a temporary file renamed over ``path``."""
    with replacing(path) as temporary, open(temporary, "wb") as f:
        write(f)
