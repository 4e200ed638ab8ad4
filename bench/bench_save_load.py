"""Image-format save/load against TensorFlow's plain save/load.

Model: three captured 400 MB float32 constants (a ~1.26 GB proto, small
enough for TensorFlow's plain path). Each measurement runs in its own
subprocess so peak RSS is per operation; ratios are ours / TensorFlow's,
measured in the same run. Targets: save <= 0.8, load <= 1.0.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ELEMENTS = 100_000_000  # 400 MB of float32 per constant
# Below the ~1.26 GB proto, so the image format (saved_model.cpb) is what gets
# written; at the 1.5 GiB default this model would still be a plain .pb.
MAX_CHUNK_SIZE = 1 << 30
# Each pair (ours, TensorFlow's) runs back to back this many times and the
# fastest of each is kept, which damps noise from other work on the machine.
REPEATS = int(os.environ.get("BENCH_SAVE_LOAD_REPEATS", "2"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_module():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    class ThreeConstants(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tables = [tf.random.stateless_uniform([ELEMENTS], seed=[seed, 5]) for seed in range(3)]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def __call__(self, indices):
            return tf.stack([tf.gather(table, indices) for table in self.tables])

    return ThreeConstants()


def _worker(operation: str, directory: str) -> dict:
    """Runs one operation in this process; returns seconds and peak RSS."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tf_bigexport import imageformat  # pylint: disable=import-outside-toplevel

    if operation.startswith("save"):
        module = _build_module()
        start = time.perf_counter()
        if operation == "save-image":
            imageformat.save(module, directory, max_chunk_size=MAX_CHUNK_SIZE)
        else:
            tf.saved_model.save(module, directory)
    else:
        start = time.perf_counter()
        loaded = imageformat.load(directory) if operation == "load-image" else tf.saved_model.load(directory)
        loaded(tf.constant([0, ELEMENTS - 1], tf.int64))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _run(operation: str, directory: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_save_load", "--worker", operation, directory],
        cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"bench worker {operation} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _pair(kind: str, image_dir: str, plain_dir: str) -> tuple[dict, dict]:
    runs = [(_run(f"{kind}-image", image_dir), _run(f"{kind}-plain", plain_dir)) for _ in range(REPEATS)]
    fastest = lambda results: min(results, key=lambda r: r["seconds"])  # noqa: E731
    return fastest([ours for ours, _ in runs]), fastest([theirs for _, theirs in runs])


def _size_gib(directory: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(directory) for name in names)
    return total / 2**30


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="bench-save-load-")
    try:
        image_dir, plain_dir = os.path.join(workdir, "image"), os.path.join(workdir, "plain")
        figures = {"save": _pair("save", image_dir, plain_dir), "load": _pair("load", image_dir, plain_dir)}
        program = "saved_model.cpb" if os.path.exists(os.path.join(image_dir, "saved_model.cpb")) \
            else "saved_model.pb"
        print(f"bench_save_load (best of {REPEATS}): 3 x {ELEMENTS * 4 / 1e6:.0f} MB constants; image dir "
              f"{_size_gib(image_dir):.2f} GiB ({program}), plain dir {_size_gib(plain_dir):.2f} GiB")
        print(f"{'operation':<10}{'imageformat s':>15}{'tensorflow s':>14}{'ratio':>8}"
              f"{'ours RSS GiB':>14}{'TF RSS GiB':>12}{'RSS ratio':>11}  target")
        for name, target in (("save", "time <= 0.8"), ("load", "time <= 1.0")):
            ours, theirs = figures[name]
            print(f"{name:<10}{ours['seconds']:>15.2f}{theirs['seconds']:>14.2f}"
                  f"{ours['seconds'] / theirs['seconds']:>8.2f}{ours['peak_rss_gib']:>14.2f}"
                  f"{theirs['peak_rss_gib']:>12.2f}{ours['peak_rss_gib'] / theirs['peak_rss_gib']:>11.2f}"
                  f"  {target}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], sys.argv[3])))
    else:
        main()
