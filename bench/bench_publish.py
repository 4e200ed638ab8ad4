"""Publish-with-verify to the GCS emulator against a plain recursive fs.put.

Generates a ~1 GiB SavedModel-shaped export of random bytes (a few large
variable shards plus many small files), then, against one
gcp-storage-emulator process on 127.0.0.1:
  baseline  gcsfs `fs.put(export, prefix, recursive=True)`, nothing else
  publish   Registry.publish: manifest (crc32c+sha256 of every local byte),
            parallel staged upload, staged verification (size + GCS crc32c),
            version claim, server-side copy into <model>/<version>/ with
            saved_model.pb last, release record, index, staging cleanup
and prints the ratio (target <= 1.3). Shown for information: one
put_file at a time (gcsfs's fs.put opens every upload at once, and the
single-threaded emulator answers the pile-up slowly), and the full re-read
verification (verify_version). Every run talks to a fresh emulator behind
the test kit's GCS conformance proxy (tests/emulators.py), as the tests do.
A last line splits the best publish into its phases (timed through the
registry's step hook): staging costs what the plain put does; the rest is
the emulator copying every byte for a server-side copy and deleting staging
one object at a time. Sizes: BENCH_PUBLISH_MIB (1024).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import emulators  # noqa: E402  (sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT)

from tf_bigexport.storage import Registry, VersionPolicy  # noqa: E402

TARGET = 1.3
# (label, step it starts after, step it ends with): see storage.registry.PUBLISH_STEPS
PHASES = (("manifest + stage", "start", "staged"), ("verify staged", "staged", "verified"),
          ("claim", "verified", "claimed"), ("copy into the version", "claimed", "copied"),
          ("program file + record + index", "copied", "indexed"), ("remove staging", "indexed", "cleaned"))
SMALL_FILES = 200
SMALL_SIZE = 256 << 10


def make_export(root: Path, total_mib: int) -> int:
    """Large shards + SMALL_FILES small ones, ~total_mib MiB of random bytes."""
    small_total = SMALL_FILES * SMALL_SIZE
    large_total = max((total_mib << 20) - small_total, 1 << 20)
    shards = 4
    block = os.urandom(16 << 20)
    written = 0
    for i in range(shards):
        path = root / "variables" / f"variables.data-{i:05d}-of-{shards:05d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        left = large_total // shards
        with open(path, "wb") as f:
            while left:
                # distinct bytes per 16 MiB block (prefix changes), no whole-file buffer
                piece = block[: min(left, len(block))]
                f.write(os.urandom(64) + piece[64:])
                left -= len(piece)
                written += len(piece)
    for i in range(SMALL_FILES):
        path = root / "assets" / f"part-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(SMALL_SIZE))
        written += SMALL_SIZE
    (root / "variables" / "variables.index").write_bytes(os.urandom(4096))
    (root / "saved_model.pb").write_bytes(os.urandom(1 << 20))
    return written + 4096 + (1 << 20)


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _baseline(export: Path) -> float:
    with emulators.start_gcs() as emu:
        fs = emu.filesystem()
        return _timed(lambda: fs.put(str(export) + "/", f"{emu.bucket}/baseline", recursive=True))


def _sequential(export: Path) -> float:
    """Informational: one put_file at a time (no request pile-up at the emulator)."""
    files = sorted(p for p in export.rglob("*") if p.is_file())
    with emulators.start_gcs() as emu:
        fs = emu.filesystem()

        def run():
            for path in files:
                fs.put_file(str(path), f"{emu.bucket}/seq/{path.relative_to(export).as_posix()}")

        return _timed(run)


def _publish(export: Path) -> tuple[float, float, int, dict[str, float]]:
    """Seconds to publish, to verify_version, the file count, and seconds per publish phase."""
    with emulators.start_gcs() as emu:
        marks: list[tuple[str, float]] = []
        reg = Registry(emu.uri("registry"), storage_options=emu.storage_options,
                       step_hook=lambda step: marks.append((step, time.perf_counter())))
        records = []
        marks.append(("start", time.perf_counter()))
        seconds = _timed(lambda: records.append(
            reg.publish(str(export), "bench", VersionPolicy.next_integer(), {}, "bench-job")))
        verify = _timed(lambda: reg.verify_version("bench", records[0].version))
        return seconds, verify, len(records[0].files), _phases(marks)


def _phases(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Seconds between publish steps, grouped as PHASES names them."""
    at = dict(marks)
    return {name: at[end] - at[begin] for name, begin, end in PHASES}


def main() -> None:
    total_mib = int(os.environ.get("BENCH_PUBLISH_MIB", "1024"))
    repeats = int(os.environ.get("BENCH_PUBLISH_REPEATS", "2"))
    logging.getLogger("storage").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    try:
        export = tmp / "export"
        size = make_export(export, total_mib)
        baselines, sequentials, publishes, verifies, phases = [], [], [], [], []
        for _ in range(repeats):  # alternate, each in a fresh emulator process
            baselines.append(_baseline(export))
            sequentials.append(_sequential(export))
            seconds, verify, files, steps = _publish(export)
            publishes.append(seconds)
            verifies.append(verify)
            phases.append(steps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    baseline, published, verify = min(baselines), min(publishes), min(verifies)
    sequential = min(sequentials)
    mib = size / (1 << 20)
    print(f"export: {files} files, {mib:.0f} MiB; gcp-storage-emulator on 127.0.0.1; "
          f"best of {repeats} (all runs: baseline {_fmt(baselines)}, publish {_fmt(publishes)})")
    print(f"{'case':34} {'seconds':>8} {'MiB/s':>8} {'ratio':>7}")
    for name, seconds in (("plain fs.put (baseline)", baseline),
                          ("sequential put_file (info)", sequential),
                          ("publish with staged verify", published),
                          ("verify_version (full re-read)", verify)):
        print(f"{name:34} {seconds:8.2f} {mib / seconds:8.1f} {seconds / baseline:7.2f}")
    print("publish phases (best run): " + ", ".join(
        f"{name} {seconds:.2f}s" for name, seconds in phases[publishes.index(published)].items()))
    ratio = published / baseline
    print(f"publish / baseline = {ratio:.2f} ({'meets' if ratio <= TARGET else 'misses'} "
          f"target <= {TARGET}); publish / sequential put_file = {published / sequential:.2f}")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}s" for v in values)


if __name__ == "__main__":
    main()
