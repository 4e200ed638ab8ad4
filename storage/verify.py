"""Compare stored objects with manifest entries.

Depths: "full" re-reads every byte and compares size, crc32c and sha256;
"native" compares size plus the backend's own crc32c where it reports one
(GCS does) and re-reads the rest; "size" is like "native" but never re-reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import Mismatch
from .manifest import FileEntry, checksum_stream
from .progress import Progress
from .transfer import run_parallel

if TYPE_CHECKING:
    from .objects import Store


def native_crc32c(info: dict) -> str | None:
    """The crc32c the backend stores for an object (GCS JSON API), if any."""
    value = info.get("crc32c")
    return value if isinstance(value, str) and len(value) == 8 else None


def reread_mismatches(store: "Store", path: str, entry: FileEntry,
                      progress: Progress | None = None) -> list[Mismatch]:
    summer = store.read_stream(path, lambda stream: checksum_stream(stream, progress=progress))
    if progress is not None:
        progress.file_done(entry.path, summer.size)
    return [Mismatch(entry.path, reason, expected, actual) for reason, expected, actual in (
        ("size", entry.size, summer.size), ("crc32c", entry.crc32c, summer.crc32c),
        ("sha256", entry.sha256, summer.sha256)) if expected != actual]


def check_entries(store: "Store", base: str, entries: list[FileEntry], infos: dict[str, dict], *,
                  depth: str, workers: int, allow_extra: bool = True,
                  label: str | None = None) -> list[Mismatch]:
    """Mismatches of the objects under `base` against `entries`; `infos` = listing of `base`.

    Re-reads show progress under `label` (default "verify <base>").
    """
    results: list[Mismatch] = []
    rereads: list[tuple[str, FileEntry]] = []
    for entry in entries:
        info = infos.get(entry.path)
        if info is None:
            results.append(Mismatch(entry.path, "missing", entry.size, None))
            continue
        size = int(info.get("size") or 0)
        if size != entry.size:
            results.append(Mismatch(entry.path, "size", entry.size, size))
            continue
        crc = native_crc32c(info)
        if depth != "full" and crc is not None:
            if crc != entry.crc32c:
                results.append(Mismatch(entry.path, "crc32c", entry.crc32c, crc))
            continue
        if depth == "size":
            continue
        rereads.append((f"{base}/{entry.path}", entry))
    if rereads:
        progress = Progress(label or f"verify {base}", sum(e.size for _, e in rereads), len(rereads))
        tasks = [lambda path=path, entry=entry: reread_mismatches(store, path, entry, progress)
                 for path, entry in rereads]
        for found in run_parallel(tasks, workers):
            results.extend(found)
        progress.close()
    if not allow_extra:
        expected = {e.path for e in entries}
        for rel in sorted(set(infos) - expected):
            results.append(Mismatch(rel, "unexpected", None, int(infos[rel].get("size") or 0)))
    return sorted(results, key=lambda m: (m.path, m.reason))
