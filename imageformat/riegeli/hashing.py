"""Data hashes computed alongside file I/O.

For big chunks the hash runs in a helper thread (the native hasher releases
the GIL), so hashing a piece overlaps with writing or reading the next one.
"""
from __future__ import annotations

import queue
import threading

from tf_bigexport.imageformat.highwayhash import HighwayHash64

#: Chunks with at least this much data get a helper thread.
OVERLAP_THRESHOLD = 8 << 20

_STOP = object()


class InlineHasher:
    def __init__(self) -> None:
        self._hasher = HighwayHash64()

    def feed(self, view) -> None:
        self._hasher.update(view)

    def digest(self) -> int:
        return self._hasher.digest()

    def close(self) -> None:
        pass


class OverlappedHasher:
    """Hashes fed buffers in order on a helper thread; digest() waits for it.

    Fed buffers must stay unchanged until digest() or close() returns.
    """

    def __init__(self) -> None:
        self._hasher = HighwayHash64()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="riegeli-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:
                try:
                    self._hasher.update(item)
                except BaseException as exc:  # reported by digest()
                    self._error = exc
            del item

    def feed(self, view) -> None:
        self._queue.put(view)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def digest(self) -> int:
        self.close()
        if self._error is not None:
            raise self._error
        return self._hasher.digest()


def make_hasher(total_bytes: int) -> InlineHasher | OverlappedHasher:
    return OverlappedHasher() if total_bytes >= OVERLAP_THRESHOLD else InlineHasher()
