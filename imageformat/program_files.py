"""Reading a SavedModel directory's files without trusting what they are.

* Only regular files are read. A file is opened with O_NONBLOCK and checked
  with fstat before any byte is read, so a FIFO cannot hang the reader and a
  device (``saved_model.pb -> /dev/zero``) is never read from.
* Symbolic links are followed only when they stay inside the model directory
  (``check_tree``); TensorFlow opens files by name, so a directory handed to
  it is checked as a whole first.
* Program files are read under ``limits.ReadLimits``: a .pb is read once, its
  messages counted (``protoscan``) before protobuf parses it; a .cpb goes
  through ``chunked.ChunkedFile`` (Riegeli and message budgets).
"""
from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError
from tf_bigexport.imageformat.limits import MAX_PB_BYTES, ReadLimits, exceeded
from tf_bigexport.imageformat.riegeli import fileio

if TYPE_CHECKING:
    from tensorflow.core.protobuf import saved_model_pb2

class SpecialFileError(ValueError):
    """A path that must be a regular file (inside the model directory) is not."""


def is_local(path: str | os.PathLike | bytes) -> bool:
    """Whether ``path`` names the local file system (not a URI TensorFlow's file layer reads)."""
    return "://" not in os.fsdecode(os.fspath(path))


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of ``path``, which must be (or link to) a regular file;
    a FIFO is refused without blocking, a device before a byte is read."""
    path = os.fspath(path)
    try:
        return fileio.open_regular(path)
    except fileio.NotRegularFile as e:
        raise SpecialFileError(f"{path}: {e}; refusing to read it") from None


def check_regular(path: str | os.PathLike, max_bytes: int, what: str = "file") -> int:
    """The size of the regular file ``path``, refused if larger than ``max_bytes``."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > max_bytes:
        raise ChunkedFormatError(os.fspath(path), exceeded(f"{what} of {size} bytes is larger than the "
                                                           f"{max_bytes} allowed"))
    return size


def read_regular(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The whole content of the regular file ``path``, refused if larger than ``max_bytes``."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise ChunkedFormatError(os.fspath(path), exceeded(f"{what} of {size} bytes is larger than the "
                                                               f"{max_bytes} allowed"))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(size + 1)
    finally:
        os.close(fd)
    if len(data) != size:
        raise SpecialFileError(f"{os.fspath(path)}: changed size while being read "
                               f"(stat said {size} bytes, read {len(data)})")
    return data


def check_tree(directory: str | os.PathLike) -> None:
    """Refuses a model directory holding anything but regular files and
    directories, or symbolic links leading outside it or to special files."""
    root = os.fspath(directory)
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise FileNotFoundError(f"{root}: no such directory")
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(current, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                target = os.path.realpath(path)
                if os.path.commonpath([real_root, target]) != real_root:
                    raise SpecialFileError(f"{path}: symbolic link to {target}, outside the model directory "
                                           f"{root}; refusing to follow it")
                try:
                    mode = os.stat(path).st_mode
                except OSError as e:
                    raise SpecialFileError(f"{path}: broken symbolic link ({e.strerror})") from None
            if not stat.S_ISDIR(mode):
                try:
                    fileio.check_regular_mode(mode)
                except fileio.NotRegularFile as e:
                    raise SpecialFileError(f"{path}: {e}; refusing to read it") from None


def read_pb(path: str | os.PathLike, limits: ReadLimits | None = None) -> "saved_model_pb2.SavedModel":
    """A saved_model.pb (a regular file), read once and parsed under ``limits``."""
    path = os.fspath(path)
    return parse_pb(read_regular(path, MAX_PB_BYTES, "a serialized protobuf"), path, limits)


def parse_pb(data: bytes, name: str, limits: ReadLimits | None = None) -> "saved_model_pb2.SavedModel":
    """A serialized SavedModel, parsed only if its message count fits ``limits``
    (default: derived from its size); errors name ``name``."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    from tf_bigexport.imageformat.protoscan import MalformedProto, MessageBudget
    if len(data) > MAX_PB_BYTES:
        raise ChunkedFormatError(name, f"{len(data)} bytes is past protobuf's limit of {MAX_PB_BYTES} "
                                       f"for one message (a larger SavedModel must be a .cpb)")
    limits = limits or ReadLimits.for_file(len(data))
    try:
        MessageBudget(name, limits).admit(data, saved_model_pb2.SavedModel.DESCRIPTOR, "the SavedModel")
        return saved_model_pb2.SavedModel.FromString(data)
    except (DecodeError, MalformedProto) as e:
        raise ChunkedFormatError(name, f"not a valid SavedModel: {e}") from None
