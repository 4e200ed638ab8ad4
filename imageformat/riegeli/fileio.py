"""Positioned, gather/scatter file access for the writer and reader.

Paths and objects with a usable ``fileno()`` go through os.writev/os.preadv,
so record bytes travel between the caller's buffer and the kernel without
Python-level copies; other file objects get the same interface with
write()/readinto().
"""
from __future__ import annotations

import io
import os
import stat
from collections.abc import Sequence
from typing import BinaryIO

_IOV_MAX = 1024  # Linux's limit on buffers per writev/preadv call

Buffer = bytes | bytearray | memoryview


class ShortRead(Exception):
    """The file ended before the requested bytes; carries where."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class FdSink:
    """Appends to an open file descriptor; patch() rewrites earlier bytes."""

    can_patch = True

    def __init__(self, fd: int, *, owns: bool) -> None:
        self._fd = fd
        self._owns = owns
        self._base = os.lseek(fd, 0, os.SEEK_CUR)

    def write(self, buffers: Sequence[Buffer]) -> None:
        """Write byte buffers (bytes, bytearray or "B" memoryviews) in order."""
        pending = list(buffers)
        while pending:
            batch = pending[:_IOV_MAX]
            written = os.writev(self._fd, batch)
            if written == sum(map(len, batch)):  # the usual case
                pending = pending[_IOV_MAX:]
                continue
            # Short write: drop what was written, keep the rest of a partial buffer.
            done = 0
            while written >= len(batch[done]):
                written -= len(batch[done])
                done += 1
            rest = pending[done:]
            rest[0] = memoryview(rest[0]).cast("B")[written:]
            pending = rest

    def patch(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self._base + offset)
            view = view[n:]
            offset += n

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._owns:
            os.close(self._fd)


class OpenFileSink(FdSink):
    """A regular file opened by the caller (open(path, "wb")): written through
    its descriptor like a path, then the file object is re-synchronised so
    its own position reflects what was written."""

    def __init__(self, f) -> None:
        f.flush()
        super().__init__(f.fileno(), owns=False)
        self._f = f

    def flush(self) -> None:
        self._f.seek(os.lseek(self._fd, 0, os.SEEK_CUR))

    def close(self) -> None:
        self.flush()


class FileObjectSink:
    """Appends to a binary file object (BytesIO, fsspec files, sockets...)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.can_patch = bool(getattr(f, "seekable", lambda: False)())
        self._base = f.tell() if self.can_patch else 0

    def write(self, buffers: Sequence[Buffer]) -> None:
        for b in buffers:
            view = memoryview(b).cast("B")
            while view:
                n = self._f.write(view)
                if n is None:  # non-blocking raw file with nothing written
                    n = 0
                view = view[n:]

    def patch(self, offset: int, data: bytes) -> None:
        end = self._f.tell()
        self._f.seek(self._base + offset)
        self.write([data])
        self._f.seek(end)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.flush()


class FdSource:
    """Positioned reads from a file descriptor (does not move its offset)."""

    def __init__(self, fd: int, *, owns: bool) -> None:
        self._fd = fd
        self._owns = owns
        self.size = os.fstat(fd).st_size

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> None:
        pending = [b for b in buffers if len(b)]
        while pending:
            batch = pending[:_IOV_MAX]
            got = os.preadv(self._fd, batch, offset)
            if got == 0:
                raise ShortRead(offset)
            offset += got
            done = 0
            while done < len(batch) and got >= len(batch[done]):
                got -= len(batch[done])
                done += 1
            rest = pending[done:]
            if got and rest:
                rest[0] = rest[0][got:]
            pending = rest

    def close(self) -> None:
        if self._owns:
            os.close(self._fd)


class FileObjectSource:
    """Positioned reads from a seekable binary file object."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        f.seek(0, os.SEEK_END)
        self.size = f.tell()

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> None:
        self._f.seek(offset)
        for b in buffers:
            view = b
            while view:
                got = self._f.readinto(view)
                if not got:
                    raise ShortRead(offset)
                offset += got
                view = view[got:]

    def close(self) -> None:
        pass


def open_sink(dest) -> tuple[FdSink | FileObjectSink, str]:
    """A sink for a path or a binary file object, and its name for messages."""
    if isinstance(dest, (str, os.PathLike)):
        path = os.fspath(dest)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        return FdSink(fd, owns=True), path
    name = str(getattr(dest, "name", "<stream>"))
    if isinstance(dest, (io.FileIO, io.BufferedWriter, io.BufferedRandom)) and dest.seekable():
        return OpenFileSink(dest), name
    return FileObjectSink(dest), name


class NotRegularFile(ValueError):
    """A FIFO, device, socket or directory where a regular file must be; says which."""


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def check_regular_mode(mode: int) -> None:
    """Raises NotRegularFile unless ``mode`` (st_mode) is a regular file's."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotRegularFile(f"is {kind}, not a regular file")


def open_regular(path: str) -> int:
    """A read-only descriptor of the regular file ``path`` (links followed).

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a
    writer; the fstat check then refuses it, and devices and sockets, before
    a byte is read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        check_regular_mode(os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_source(src, name: str | None) -> tuple[FdSource | FileObjectSource, str]:
    """A source for a path or a seekable binary file object, and its name.

    Paths are opened with O_NONBLOCK, so a FIFO does not block the open, and
    anything but a regular file is refused (NotRegularFile) before a read.
    """
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        return FdSource(open_regular(path), owns=True), name or path
    label = name or str(getattr(src, "name", "<stream>"))
    try:
        fd = src.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return FileObjectSource(src), label
    check_regular_mode(os.fstat(fd).st_mode)
    return FdSource(fd, owns=False), label
