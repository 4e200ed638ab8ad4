"""The one exception type for unreadable Riegeli/records files."""
from __future__ import annotations


class RiegeliError(ValueError):
    """A Riegeli/records file is corrupt, truncated, hostile or unsupported.

    ``path`` names the file, ``offset`` is the byte offset where the problem
    was found (None when not tied to one) and ``reason`` says what failed.
    """

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        where = f"at byte {offset}: " if offset is not None else ""
        super().__init__(f"{path}: {where}{reason}")

    def __reduce__(self):  # keep path/offset/reason across pickling (Beam workers)
        return (type(self), (self.path, self.offset, self.reason))


class ChunkFormatError(Exception):
    """Internal: chunk data that cannot be decoded; the reader turns it into a
    RiegeliError carrying the file name and the chunk's offset."""
