"""File manifests: relative path, size, crc32c and sha256 of every file in an export.

crc32c is the base64 of the big-endian 4-byte value, the form GCS reports in
object metadata, so it can be compared with the backend's own checksum.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Iterable

import google_crc32c

from tf_bigexport.savedmodel_files import PROGRAM_FILES

from .errors import StorageError
from .names import validate_relative_path
from .progress import Progress
from .transfer import run_parallel

READ_CHUNK = 8 << 20


@dataclass(frozen=True)
class FileEntry:
    path: str  # posix, relative to the export directory
    size: int
    crc32c: str  # base64 of big-endian crc32c, as GCS reports it
    sha256: str  # hex

    @classmethod
    def from_dict(cls, data: dict) -> "FileEntry":
        # Records come from buckets other systems can write: a path must stay inside its directory.
        return cls(path=validate_relative_path(data["path"], where="file entry"), size=int(data["size"]),
                   crc32c=data["crc32c"], sha256=data["sha256"])


@dataclass(frozen=True)
class Manifest:
    files: list[FileEntry] = field(default_factory=list)

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def markers(self) -> list[FileEntry]:
        return [f for f in self.files if f.path in PROGRAM_FILES]

    def payload(self) -> list[FileEntry]:
        """Everything except the marker files, biggest first (better parallel packing)."""
        return sorted((f for f in self.files if f.path not in PROGRAM_FILES),
                      key=lambda f: (-f.size, f.path))

    def to_list(self) -> list[dict]:
        return [asdict(f) for f in self.files]

    @classmethod
    def from_list(cls, items: Iterable[dict]) -> "Manifest":
        return cls(files=[FileEntry.from_dict(d) for d in items])


class Checksummer:
    """crc32c + sha256 + size over a stream of chunks."""

    def __init__(self) -> None:
        self._crc = google_crc32c.Checksum()
        self._sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._crc.update(chunk)
        self._sha.update(chunk)
        self.size += len(chunk)

    @property
    def crc32c(self) -> str:
        return base64.b64encode(self._crc.digest()).decode("ascii")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def checksum_stream(stream: BinaryIO, chunk_size: int = READ_CHUNK,
                    progress: Progress | None = None) -> Checksummer:
    """Read `stream` to the end in chunks (never whole), returning its checksums.

    `progress` counts the bytes read, and takes them back if the read fails: a retry reads them again.
    """
    summer = Checksummer()
    try:
        while chunk := stream.read(chunk_size):
            summer.update(chunk)
            if progress is not None:
                progress.add_bytes(len(chunk))
    except BaseException:
        if progress is not None:
            progress.add_bytes(-summer.size)
        raise
    return summer


def entry_for_file(local_path: str, rel_path: str) -> FileEntry:
    try:
        with open(local_path, "rb", buffering=0) as f:
            summer = checksum_stream(f)
    except OSError as exc:
        raise StorageError(f"{local_path}: cannot read: {exc.strerror or exc}") from exc
    return FileEntry(path=rel_path, size=summer.size, crc32c=summer.crc32c, sha256=summer.sha256)


def _check_link(full: str, root_real: str) -> None:
    """Symlinks are followed only to regular files inside the export directory."""
    target = os.path.realpath(full)
    if os.path.commonpath([target, root_real]) != root_real:
        raise StorageError(f"{full}: symbolic link to {target} points outside the export directory "
                           f"{root_real}; refusing to follow it")
    if os.path.isdir(target):
        raise StorageError(f"{full}: symbolic link to a directory; exports must not contain them")


def build_manifest(local_dir: str | os.PathLike, *, workers: int = 4) -> Manifest:
    """Walk `local_dir` and checksum every regular file.

    A symlink is followed only when it resolves to a regular file inside
    `local_dir`; one pointing outside (or to a directory) is refused, so an
    export can never make us upload, say, /etc/passwd. Files are hashed on
    `workers` threads (hashlib releases the GIL on big buffers).
    """
    root = os.fspath(local_dir)
    if not os.path.isdir(root):
        raise StorageError(f"{root}: not a directory (expected a SavedModel export directory)")
    root_real = os.path.realpath(root)
    rel_paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                _check_link(full, root_real)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if not os.path.isfile(full):
                raise StorageError(f"{full}: not a regular file")
            validate_relative_path(rel, where=root)
            rel_paths.append(rel)
    if not rel_paths:
        raise StorageError(f"{root}: directory is empty, nothing to publish")
    tasks = [lambda rel=rel: entry_for_file(os.path.join(root, *rel.split("/")), rel)
             for rel in rel_paths]
    return Manifest(files=run_parallel(tasks, workers))
