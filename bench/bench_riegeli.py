"""Riegeli writer/reader throughput against plain sequential file I/O.

Writes RECORDS records of 64 MiB (incompressible bytes) with our RecordWriter
and with plain file writes of the same bytes, then reads them back with our
RecordReader and with plain reads, in the same run and the same temp dir.

Baselines: the writer is compared with unbuffered f.write(record) calls; the
reader with unbuffered f.read(64 MiB) per record, which like the reader hands
out a new bytes object per record.  (The reader allocates its record objects
with transparent huge pages, which is why it can beat that baseline; reading
into one reused buffer, which allocates nothing, is shown for information.)
Each figure is the best of REPEATS runs, the cases alternating so that load
from other processes hits them alike; dirty pages are synced (untimed) before
every timed run; the median is shown beside the best.  The writer hashes
each 1 MiB window right after writing it, on a helper thread for chunks of
8 MiB or more (the reader likewise): with an idle core the hash hides behind
the I/O, on a busy machine it adds its CPU time (HighwayHash of data just
written runs at ~4-6 GiB/s here, a page-cache write at ~2.5-3 GiB/s, so
without a free core the writer cannot reach much more than ~0.65-0.7).  So besides the wall-clock ratio (the target)
the table shows the ratio of CPU time of all threads and of the calling
thread alone; the latter is the ratio reached when the hashing thread has a
core of its own.  The load average is printed for context.  Files go to
/dev/shm when it exists (page-cache speed, so the figures show our CPU
overhead rather than disk noise), else the system temp dir; BENCH_TMPDIR
overrides.  With /dev/shm, a durable write (both sides fsync'd) to the work
disk is shown too.  Neither side is fsync'd in the target rows.
Target: writer and reader ratio >= 0.8 for uncompressed records.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

from tf_bigexport.imageformat import highwayhash
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter

RECORD_SIZE = 64 << 20
RECORDS = 4
REPEATS = 7
TARGET = 0.8


def _payloads() -> list[bytes]:
    # Two distinct records, alternated: a few hundred MiB written, 128 MiB in memory.
    return [os.urandom(RECORD_SIZE), os.urandom(RECORD_SIZE)]


def _best_interleaved(runs: dict, repeats: int = REPEATS) -> dict[str, tuple[float, float, float, float]]:
    """Best wall time, CPU time of all threads, CPU time of the calling thread
    and median wall time for each run, alternating the runs so that load from
    other processes hits all of them alike."""
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            os.sync()
            wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
            run()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu,
                                  time.thread_time() - main))
    return {name: (*(min(s[i] for s in samples[name]) for i in range(3)),
                   statistics.median(s[0] for s in samples[name])) for name in runs}


def _plain_write(path: str, payloads: list[bytes], durable: bool = False) -> None:
    with open(path, "wb", buffering=0) as f:
        for i in range(RECORDS):
            view = memoryview(payloads[i % 2])
            while view:
                view = view[f.write(view):]
        if durable:
            os.fsync(f.fileno())


def _plain_read_fresh(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        for _ in range(RECORDS):
            data = f.read(RECORD_SIZE)
            assert len(data) == RECORD_SIZE
            del data


def _plain_read_reused(path: str) -> None:
    buf = bytearray(RECORD_SIZE)
    with open(path, "rb", buffering=0) as f:
        for _ in range(RECORDS):
            assert f.readinto(buf) == RECORD_SIZE


def _riegeli_write(path: str, payloads: list[bytes], compression: str, durable: bool = False) -> None:
    with open(path, "wb", buffering=0) as f:
        with RecordWriter(f, compression=compression) as writer:
            for i in range(RECORDS):
                writer.write_record(payloads[i % 2])
        if durable:
            os.fsync(f.fileno())


def _riegeli_read(path: str) -> None:
    count = 0
    with RecordReader(path) as reader:
        for record in reader:
            assert len(record) == RECORD_SIZE
            count += 1
            del record
    assert count == RECORDS


def measure(tmp: str, disk_tmp: str | None) -> list[tuple[str, float, float, float, float, float, str]]:
    payloads = _payloads()
    plain = os.path.join(tmp, "plain.bin")
    ours = os.path.join(tmp, "records.riegeli")
    total = RECORDS * RECORD_SIZE
    rows = []

    def gib_s(seconds: float) -> float:
        return total / seconds / (1 << 30)

    writes = _best_interleaved({
        "plain": lambda: _plain_write(plain, payloads),
        "none": lambda: _riegeli_write(ours, payloads, "none"),
    })
    reads = _best_interleaved({
        "plain": lambda: _plain_read_fresh(plain),
        "reused": lambda: _plain_read_reused(plain),
        "none": lambda: _riegeli_read(ours),
    })
    os.unlink(ours)
    zstd = _best_interleaved({
        "write": lambda: _riegeli_write(ours, payloads, "zstd"),
        "read": lambda: _riegeli_read(ours),
    }, repeats=1)
    durable = {}
    if disk_tmp is not None:
        plain_disk, ours_disk = os.path.join(disk_tmp, "plain.bin"), os.path.join(disk_tmp, "records.riegeli")
        durable = _best_interleaved({
            "plain": lambda: _plain_write(plain_disk, payloads, durable=True),
            "none": lambda: _riegeli_write(ours_disk, payloads, "none", durable=True),
        }, repeats=3)

    def row(case: str, result, baseline, note: str) -> None:
        rows.append((case, gib_s(result[0]), *(baseline[i] / result[i] for i in range(4)), note))

    row("plain write (baseline)", writes["plain"], writes["plain"], "")
    row("riegeli write, none", writes["none"], writes["plain"], "target")
    row("plain read, new bytes per record (baseline)", reads["plain"], reads["plain"], "")
    row("plain readinto one reused buffer", reads["reused"], reads["plain"], "info")
    row("riegeli read, none", reads["none"], reads["plain"], "target")
    row("riegeli write, zstd (incompressible data)", zstd["write"], writes["plain"], "info")
    row("riegeli read, zstd (incompressible data)", zstd["read"], reads["plain"], "info")
    if durable:
        row("plain write + fsync, work disk (baseline)", durable["plain"], durable["plain"], "")
        row("riegeli write + fsync, work disk", durable["none"], durable["plain"], "info")
    return rows


def _temp_root() -> str | None:
    chosen = os.environ.get("BENCH_TMPDIR")
    if chosen:
        return chosen
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return None


def main() -> None:
    load_before = os.getloadavg()[0]
    root = _temp_root()
    # Durable writes go to the system temp dir (the work disk) when the main
    # runs are on a RAM disk; both sides are fsync'd there.
    disk_root = tempfile.gettempdir() if root == "/dev/shm" else None
    with tempfile.TemporaryDirectory(prefix="bench-riegeli-", dir=root) as tmp, \
            tempfile.TemporaryDirectory(prefix="bench-riegeli-", dir=disk_root) as disk_tmp:
        rows = measure(tmp, disk_tmp if disk_root else None)
        where = os.path.dirname(tmp)
    print(f"Riegeli/records throughput: {RECORDS} records x {RECORD_SIZE >> 20} MiB in {where}, "
          f"best of {REPEATS} interleaved runs (fsync'd work-disk rows: best of 3); HighwayHash loop: "
          f"{highwayhash.implementation()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"{'case':46} {'GiB/s':>7} {'ratio':>6} {'cpu':>6} {'main':>6} {'median':>7}  note")
    for case, speed, ratio, cpu_ratio, main_ratio, median_ratio, note in rows:
        verdict = ""
        if note == "target":
            verdict = f"target >= {TARGET}: {'ok' if ratio >= TARGET else 'MISSED'}"
        elif note == "info":
            verdict = "for information"
        print(f"{case:46} {speed:7.2f} {ratio:6.2f} {cpu_ratio:6.2f} {main_ratio:6.2f} "
              f"{median_ratio:7.2f}  {verdict}")
    print("ratio: baseline wall time / ours (higher is better; the target).  cpu: the same with the")
    print("CPU time of all threads (our extra work: hashing, layout).  main: with the calling thread's")
    print("CPU time only, i.e. the ratio reached when the hashing thread has a core of its own.")
    print("median: ratio of median wall times.  Both sides of every ratio write the same bytes to")
    print("the same file system, both fsync'd or neither; page-cache rows measure our CPU overhead,")
    print("the fsync'd rows what a durable write costs end to end.")


if __name__ == "__main__":
    main()
