"""The servable form against the image format, on the model of 3 x 800 MB captured constants.

Save: imageformat.save(..., large_constants="variables") (constants into the
checkpoint, a plain saved_model.pb) against imageformat.save (the image
format, saved_model.cpb) of the same model. Targets: time <= 1.2x, peak RSS
during the save <= 1.0x (the model's own memory included; the RSS the
save adds on top is printed below it). Load: stock tf.saved_model.load of the servable
form against imageformat.load of the .cpb, each followed by one call (no
target; printed for the README).

Each operation runs in its own subprocess (a fresh TensorFlow, no memory
left over from the other); a thread samples VmRSS during the measured
operation only, so the model's construction does not count. The model is
bench_large_save's (set BENCH_LARGE_SAVE_ELEMENTS for smaller constants).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.bench_large_save import ELEMENTS, PhaseSampler, _rss_bytes

SAVE_TIME_TARGET = 1.2
SAVE_RSS_TARGET = 1.0
REPEATS = int(os.environ.get("BENCH_SERVABLE_REPEATS", "1"))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measured(operation) -> dict:
    sampler = PhaseSampler()
    sampler.start()
    start_rss = _rss_bytes()
    before = sampler.enter("measured")
    start = time.perf_counter()
    operation()
    seconds = time.perf_counter() - start
    sampler.leave(before)
    sampler.stop()
    return {"seconds": seconds, "peak_rss": sampler.peaks["measured"], "start_rss": start_rss}


def _worker(operation: str, directory: str) -> dict:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if operation.startswith("save"):
        from bench.bench_large_save import _build_module  # pylint: disable=import-outside-toplevel
        from tf_bigexport import imageformat  # pylint: disable=import-outside-toplevel
        module, _ = _build_module()
        how = {"large_constants": "variables"} if operation == "save-servable" else {}
        return _measured(lambda: imageformat.save(module, directory, **how))

    def load() -> None:
        if operation == "load-image":
            from tf_bigexport import imageformat  # pylint: disable=import-outside-toplevel
            loaded = imageformat.load(directory)
        else:  # stock TensorFlow: nothing of this project is imported
            loaded = tf.saved_model.load(directory)
        loaded(tf.constant([0, ELEMENTS - 1], tf.int64)).numpy()
    result = _measured(load)
    result["project_imported"] = any(name.split(".")[0] == "tf_bigexport" for name in sys.modules)
    return result


def _run(operation: str, directory: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", "bench.bench_servable", "--worker", operation, directory],
                            cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"bench worker {operation} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _program(directory: str) -> tuple[str, int]:
    for name in ("saved_model.pb", "saved_model.cpb"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return name, os.path.getsize(path)
    raise FileNotFoundError(f"{directory}: no program file")


def _best(results: list[dict]) -> dict:
    return min(results, key=lambda r: r["seconds"])


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f}"


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="bench-servable-")
    try:
        servable_dir, image_dir = os.path.join(workdir, "servable"), os.path.join(workdir, "image")
        saves = {"servable": [], "image": []}
        for _ in range(REPEATS):  # pairs back to back: both see the same machine load
            for form, directory in (("servable", servable_dir), ("image", image_dir)):
                shutil.rmtree(directory, ignore_errors=True)
                saves[form].append(_run(f"save-{form}", directory))
        loads = {"stock": _best([_run("load-stock", servable_dir) for _ in range(REPEATS)]),
                 "image": _best([_run("load-image", image_dir) for _ in range(REPEATS)])}
        servable, image = _best(saves["servable"]), _best(saves["image"])
        servable_program, image_program = _program(servable_dir), _program(image_dir)
        print(f"bench_servable (best of {REPEATS}): 3 x {ELEMENTS * 4 / 1e6:.0f} MB captured constants; "
              f"servable {servable_program[0]} {servable_program[1] / 1e3:.1f} kB, "
              f"image {image_program[0]} {_gib(image_program[1])} GiB")
        print(f"{'operation':<34}{'servable s':>11}{'image s':>9}{'ratio':>7}"
              f"{'servable RSS GiB':>18}{'image RSS GiB':>15}{'ratio':>7}  target")
        time_ratio = servable["seconds"] / image["seconds"]
        rss_ratio = servable["peak_rss"] / image["peak_rss"]
        verdict = "ok" if time_ratio <= SAVE_TIME_TARGET and rss_ratio <= SAVE_RSS_TARGET else "MISSED"
        print(f"{'save':<34}{servable['seconds']:>11.1f}{image['seconds']:>9.1f}{time_ratio:>7.2f}"
              f"{_gib(servable['peak_rss']):>18}{_gib(image['peak_rss']):>15}{rss_ratio:>7.2f}"
              f"  time <= {SAVE_TIME_TARGET}, RSS <= {SAVE_RSS_TARGET}: {verdict}")
        print(f"{'  of which added by the save':<34}{'':>11}{'':>9}{'':>7}"
              f"{_gib(servable['peak_rss'] - servable['start_rss']):>18}"
              f"{_gib(image['peak_rss'] - image['start_rss']):>15}")
        stock, ours = loads["stock"], loads["image"]
        assert not stock["project_imported"], "the stock load imported tf_bigexport"
        print(f"{'load + call (stock TF / imageformat)':<34}{stock['seconds']:>11.1f}{ours['seconds']:>9.1f}"
              f"{stock['seconds'] / ours['seconds']:>7.2f}{_gib(stock['peak_rss']):>18}"
              f"{_gib(ours['peak_rss']):>15}{stock['peak_rss'] / ours['peak_rss']:>7.2f}  (no target)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], sys.argv[3])))
    else:
        main()
