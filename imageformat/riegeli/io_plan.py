"""Scatter/gather plans for moving a chunk's logical bytes to or from the file.

Logical bytes of a chunk are contiguous in memory (the caller's buffers) but
interrupted by block headers in the file.  A plan cuts a logical range into
windows of about WINDOW bytes; each window is one positioned writev/preadv
(block-header slots included) plus the memory spans to hash, so hashing of a
window can run while the next window is transferred, and touches bytes that
are still in cache.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tf_bigexport.imageformat.riegeli.layout import BLOCK_HEADER_SIZE, physical_runs

WINDOW = 1 << 20


@dataclass
class Window:
    start: int  # physical file offset of iov[0]
    iov: list = field(default_factory=list)  # memoryviews in file order
    block_slots: list = field(default_factory=list)  # (index into iov, physical position)
    spans: list = field(default_factory=list)  # logical pieces in order, merged per buffer


def plan_windows(chunk_begin: int, logical_begin: int, buffers: Sequence[memoryview],
                 window: int = WINDOW) -> Iterator[Window]:
    """Windows covering logical bytes [logical_begin, logical_begin + total) of
    the chunk at ``chunk_begin``, mapped onto ``buffers`` in order.  Block
    header slots are left as None in ``iov`` for the caller to fill."""
    buffers = [b for b in buffers if len(b)]
    total = sum(len(b) for b in buffers)
    current: Window | None = None
    size = 0
    index, offset = 0, 0
    span_start = 0  # offset in buffers[index] where the current window's span began
    for kind, pos, length in physical_runs(chunk_begin, logical_begin, logical_begin + total):
        if current is None:
            current = Window(pos)
            span_start = offset
        if kind == "block":
            current.block_slots.append((len(current.iov), pos))
            current.iov.append(None)
        else:
            remaining = length
            while remaining:
                buf = buffers[index]
                n = min(remaining, len(buf) - offset)
                current.iov.append(buf[offset:offset + n])
                offset += n
                remaining -= n
                if offset == len(buf):
                    current.spans.append(buf[span_start:offset])
                    index, offset, span_start = index + 1, 0, 0
        size += length
        if size >= window:
            if index < len(buffers) and offset > span_start:
                current.spans.append(buffers[index][span_start:offset])
            yield current
            current, size = None, 0
    if current is not None:
        if index < len(buffers) and offset > span_start:
            current.spans.append(buffers[index][span_start:offset])
        yield current


def fill_block_slots(w: Window, headers: memoryview, first_block: int) -> None:
    """Put the precomputed block headers (24 bytes each from ``first_block``) in the slots."""
    for slot, pos in w.block_slots:
        at = (pos - first_block) // (1 << 16) * BLOCK_HEADER_SIZE
        w.iov[slot] = headers[at:at + BLOCK_HEADER_SIZE]
