"""Peak memory of a whole export against TensorFlow's own save of the same model.

Model: a tf.Module whose function captures 480 MiB of float32 constants (8 of
60 MiB), so its program proto is about 480 MiB: the case the pipeline exists
for, and the one that costs memory. Two runs, each in fresh processes:

  stock   a process builds the model, traces its signature and calls
          tf.saved_model.save (nothing else)
  export  `python -m tf_bigexport run` on a jobs file naming the same
          factory (DirectRunner, local registry): trace and save in one
          process, the reload check in another, the pipeline around them

The peak of each is the peak of the sum of VmRSS over the whole process tree
(sampled from /proc every 20 ms), so memory held by a parent while a child
works counts. Target: export peak <= 1.3 x stock peak. Run it alone
(`flock /tmp/heavy.lock python -m bench bench_export_memory`): it needs about
6 GiB. BENCH_EXPORT_MEMORY_MIB sets another model size.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

MIB = int(os.environ.get("BENCH_EXPORT_MEMORY_MIB", "480"))
PARTS = 8
TARGET = 1.3
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def constants_model(mib: int = MIB, parts: int = PARTS):
    """The benchmark's model (also its jobs-file factory): ``mib`` MiB of captured constants."""
    import numpy as np
    import tensorflow as tf

    rows = mib * (1 << 20) // 4 // parts // 256
    rng = np.random.default_rng(0)
    tables = [tf.constant(rng.standard_normal((rows, 256), dtype=np.float32)) for _ in range(parts)]

    class Constants(tf.Module):
        def __call__(self, x):
            return {"y": tf.add_n([tf.matmul(x, t, transpose_b=True)[:, :4] for t in tables])}

    return Constants()


SIGNATURE = [{"name": "x", "dtype": "float32", "shape": [None, 256]}]


def _stock_save(directory: str) -> None:
    import tensorflow as tf
    model = constants_model()
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
    tf.saved_model.save(model, directory, signatures={"serving_default": function.get_concrete_function()})


# ---- process-tree RSS --------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _label(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    for marker, name in (("trace_and_save_child", "trace and save process"),
                         ("reload_check", "reload-check process"), ("tf_bigexport run", "pipeline process"),
                         ("--stock", "stock save process")):
        if marker in text:
            return name
    return "other"


class TreeSampler:
    """Peak of the summed RSS of a process and its descendants, and each kind of process's own peak."""

    def __init__(self, root: int, every: float = 0.02) -> None:
        self.root = root
        self.peak = 0
        self.by_label: dict[str, int] = {}
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            pids, todo = [], [self.root]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo += tree.get(pid, [])
            total = 0
            for pid in pids:
                rss = _rss(pid)
                total += rss
                label = _label(pid)
                self.by_label[label] = max(self.by_label.get(label, 0), rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _measure(command: list[str], env: dict) -> tuple[TreeSampler, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    out, err = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}")
    return sampler, time.perf_counter() - started


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def main() -> None:
    scratch = tempfile.mkdtemp(prefix="bench-export-memory-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_BIGEXPORT")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        stock, stock_seconds = _measure([sys.executable, "-m", "bench.bench_export_memory", "--stock",
                                         os.path.join(scratch, "stock")], env)
        jobs = os.path.join(scratch, "jobs.json")
        with open(jobs, "w", encoding="utf-8") as f:
            json.dump({"jobs": [{"name": "constants", "factory": "bench.bench_export_memory:constants_model",
                                 "signatures": {"serving_default": SIGNATURE},
                                 "sample_inputs": {"serving_default": {"generate": {"seed": 0, "batch": 2}}}}]}, f)
        export, export_seconds = _measure([sys.executable, "-m", "tf_bigexport", "run", "--jobs", jobs,
                                           "--registry", os.path.join(scratch, "registry"), "--work_dir",
                                           os.path.join(scratch, "work"), "--python_path", _ROOT], env)
        published = os.path.join(scratch, "registry", "constants", "1")
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(published) for n in names)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratio = export.peak / stock.peak
    print(f"bench_export_memory: a tf.Module with {MIB} MiB of captured constants; published {_gib(size)} GiB")
    print(f"  {'run':<44} {'peak GiB':>8} {'seconds':>8}")
    print(f"  {'stock: tf.saved_model.save, one process':<44} {_gib(stock.peak):>8} {stock_seconds:>8.1f}")
    print(f"  {'export: tf-bigexport run (process tree)':<44} {_gib(export.peak):>8} {export_seconds:>8.1f}")
    for label in ("pipeline process", "trace and save process", "reload-check process"):
        print(f"    {label + ' alone':<42} {_gib(export.by_label.get(label, 0)):>8}")
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"  export peak / stock peak = {ratio:.2f}   target <= {TARGET}: {verdict}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stock":
        _stock_save(sys.argv[2])
    else:
        main()
