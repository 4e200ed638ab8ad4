"""Peak resident memory of an image-format save of a proto past 2 GiB.

Model: three captured 800 MB float32 constants (the ~2.5 GB proto of
tests/test_large_model.py). The save runs in its own subprocess; a thread
samples VmRSS from /proc/self/status every few milliseconds (tracemalloc
would miss TensorFlow's C++ allocations), and the phases of the save are
bracketed by wrapping the functions that run them, so the table shows where
each peak comes from. Printed: the model's RSS before the save (eager tensors
and the traced function), the peak during the save, what the save adds, and
peak / proto size. Target: peak during save <= 3x the proto size.
Set BENCH_LARGE_SAVE_ELEMENTS to try another constant size.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ELEMENTS = int(os.environ.get("BENCH_LARGE_SAVE_ELEMENTS", "200000000"))  # 800 MB of float32 each
TARGET = 3.0
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SAMPLE_SECONDS = 0.003


def _rss_bytes() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PhaseSampler:
    """Samples RSS in a thread and keeps the peak seen in each named phase."""

    def __init__(self) -> None:
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self.order: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _note(self, rss: int) -> None:
        phase = self.phase
        if phase not in self.peaks:
            self.order.append(phase)
            self.peaks[phase] = rss
        elif rss > self.peaks[phase]:
            self.peaks[phase] = rss

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            self._note(_rss_bytes())

    def enter(self, phase: str) -> str:
        previous, self.phase = self.phase, phase
        self._note(_rss_bytes())
        return previous

    def leave(self, previous: str) -> None:
        self._note(_rss_bytes())
        self.phase = previous

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._note(_rss_bytes())


def _bracket(sampler: PhaseSampler, owner, attribute: str, phase: str) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        previous = sampler.enter(phase)
        try:
            return original(*args, **kwargs)
        finally:
            sampler.leave(previous)

    setattr(owner, attribute, wrapper)


def _build_module():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class ThreeBigConstants(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tables = [tf.random.stateless_uniform([ELEMENTS], seed=[seed, 17]) for seed in range(3)]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="indices")])
        def __call__(self, indices):
            return tf.stack([tf.gather(table, indices) for table in self.tables])

    module = ThreeBigConstants()
    created = _rss_bytes()
    module(tf.constant([0, ELEMENTS - 1], tf.int64))  # traced, as a user's model would be
    return module, created


def _worker(directory: str) -> dict:
    import gc  # pylint: disable=import-outside-toplevel

    from tensorflow.python.checkpoint import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
    from tensorflow.python.saved_model import fingerprinting_utils  # pylint: disable=import-outside-toplevel
    from tensorflow.python.saved_model import save as save_lib  # pylint: disable=import-outside-toplevel

    from tf_bigexport import imageformat  # pylint: disable=import-outside-toplevel
    from tf_bigexport.imageformat import chunked, graph_assembly, tf_support  # pylint: disable=import-outside-toplevel

    baseline = _rss_bytes()
    module, created_rss = _build_module()
    gc.collect()
    model_rss = _rss_bytes()

    sampler = PhaseSampler()
    # Outer phases first, inner ones inside them (a wrapper sets the phase for its duration).
    _bracket(sampler, tf_support, "_ORIGINAL_FILL_META_GRAPH_DEF", "meta graph: rest (copies, signatures)")
    _bracket(sampler, save_lib._SaveableView, "map_resources",  # pylint: disable=protected-access
             "meta graph: captures to constants")
    _bracket(sampler, graph_assembly, "assemble_graph_def", "meta graph: graph assembly")
    _bracket(sampler, checkpoint_lib.TrackableSaver, "save", "checkpoint")
    _bracket(sampler, chunked, "write_saved_model_proto", "split + write saved_model.cpb")
    _bracket(sampler, fingerprinting_utils, "write_fingerprint", "fingerprint")
    del save_lib
    sampler.start()
    start = time.perf_counter()
    previous = sampler.enter("save (other)")
    imageformat.save(module, directory)
    sampler.leave(previous)
    seconds = time.perf_counter() - start
    sampler.stop()
    program = os.path.join(directory, "saved_model.cpb")
    return {
        "seconds": seconds,
        "baseline_rss": baseline,
        "model_rss": model_rss,
        "created_rss": created_rss,
        "peak_rss": max(sampler.peaks.values()),
        "phases": [(name, sampler.peaks[name]) for name in sampler.order if name != "idle"],
        "proto_bytes": os.path.getsize(program) if os.path.exists(program) else 0,
    }


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="bench-large-save-")
    try:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(
            [sys.executable, "-m", "bench.bench_large_save", "--worker", os.path.join(workdir, "big")],
            cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"bench worker failed:\n{result.stderr[-4000:]}")
        r = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    proto = r["proto_bytes"]
    ratio = r["peak_rss"] / proto if proto else float("nan")
    print(f"bench_large_save: 3 x {ELEMENTS * 4 / 1e6:.0f} MB constants, saved_model.cpb "
          f"{_gib(proto)} GiB, save {r['seconds']:.1f} s")
    print(f"  RSS after imports (TensorFlow)   {_gib(r['baseline_rss']):>6} GiB")
    print(f"  RSS once the constants exist     {_gib(r['created_rss']):>6} GiB "
          f"(of which eager tensors {_gib(3 * ELEMENTS * 4)} GiB)")
    print(f"  RSS of the model before save     {_gib(r['model_rss']):>6} GiB (after tracing __call__)")
    print(f"  peak RSS during save             {_gib(r['peak_rss']):>6} GiB")
    print(f"  added by the save (peak - model) {_gib(r['peak_rss'] - r['model_rss']):>6} GiB")
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"  peak / proto size                {ratio:>6.2f}   target <= {TARGET}: {verdict}")
    print("  peak RSS by phase (GiB):")
    for name, peak in r["phases"]:
        print(f"    {name:<36}{_gib(peak):>6}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2])))
    else:
        main()
