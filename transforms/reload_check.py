"""Reload a staged SavedModel in a fresh process and compare with golden outputs.

The Verify stage runs ``child_main`` through child_process.run_child (phases
reported as it goes); by hand: ``python -m tf_bigexport.transforms.reload_check
MODEL_DIR INPUTS_NPZ GOLDEN_NPZ`` prints one JSON object
{"problems": [...], "fingerprint": {...}}. A fresh interpreter proves the
model loads from its bytes alone, with nothing left over from the process
that built it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import numpy as np

from tf_bigexport.transforms.elements import FLOAT_ATOL, FLOAT_RTOL


def compare_outputs(name: str, golden: np.ndarray, actual: np.ndarray) -> str | None:
    """None if equal (exact for integer/bool/string, allclose for floats), else a reason."""
    if golden.shape != actual.shape:
        return f"{name}: shape {list(actual.shape)}, golden {list(golden.shape)}"
    if golden.dtype.kind in "fc":
        if not np.allclose(actual, golden, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True):
            worst = float(np.max(np.abs(actual.astype(np.complex128) - golden.astype(np.complex128))))
            return f"{name}: differs beyond rtol={FLOAT_RTOL} atol={FLOAT_ATOL} (max abs diff {worst:g})"
        return None
    if golden.dtype.kind in "SUO":
        golden, actual = golden.astype(bytes), np.asarray(actual).astype(bytes)
    if not np.array_equal(actual, golden):
        return f"{name}: values differ from golden outputs (exact comparison for {golden.dtype})"
    return None


def _call_and_compare(loaded: Any, signature: str, feeds: dict[str, np.ndarray], golden: dict[str, np.ndarray],
                      what: str, *, name_every_problem: bool = False) -> list[str]:
    """Problems of calling ``signature`` with ``feeds``: missing, failing, or outputs unlike the golden
    ones (those start with ``what`` too if ``name_every_problem``)."""
    import tensorflow as tf
    if signature not in loaded.signatures:
        return [f"{what}: missing after reload (has {sorted(loaded.signatures)})"]
    try:
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
    except (TypeError, ValueError, tf.errors.OpError) as error:
        return [f"{what}: calling {signature!r} failed: {str(error).splitlines()[0]}"]
    expected_names = {k.partition("/")[2] for k in golden if k.startswith(signature + "/")}
    problems = [] if set(outputs) == expected_names else [
        f"{what}: outputs {sorted(outputs)}, golden {sorted(expected_names)}"]
    found = (compare_outputs(f"{signature}/{name}", golden[f"{signature}/{name}"], outputs[name].numpy())
             for name in sorted(expected_names & set(outputs)))
    prefix = f"{what}: " if name_every_problem else ""
    return problems + [prefix + problem for problem in found if problem]


def check(model_dir: str, inputs_npz: str, golden_npz: str,
          phase: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    phase("starting TensorFlow")
    from tf_bigexport import imageformat
    from tf_bigexport.imageformat import serving_warmup
    from tf_bigexport.imageformat.fingerprints import compute_fingerprint_bytes, fingerprint_dict

    with np.load(inputs_npz, allow_pickle=False) as npz:
        inputs = {k: npz[k] for k in npz.files}
    with np.load(golden_npz, allow_pickle=False) as npz:
        golden = {k: npz[k] for k in npz.files}

    problems = []
    phase("loading the model")
    loaded = imageformat.load(model_dir)
    by_signature: dict[str, dict[str, np.ndarray]] = {}
    for key, value in inputs.items():
        signature, _, input_name = key.partition("/")
        by_signature.setdefault(signature, {})[input_name] = value
    for signature, feeds in sorted(by_signature.items()):
        phase(f"calling {signature}")
        problems += _call_and_compare(loaded, signature, feeds, golden, what=f"signature {signature!r}")
    # What TensorFlow Serving does at load time: a request that fails there keeps the version from loading.
    warmup = serving_warmup.read_requests(model_dir)
    for number, (signature, feeds) in enumerate(warmup, start=1):
        phase(f"replaying warmup request {number} of {len(warmup)}")
        problems += _call_and_compare(loaded, signature, feeds, golden, what=f"warmup request {number} ({signature!r})",
                                      name_every_problem=True)
    del loaded
    phase("recomputing the fingerprint")
    return {"problems": problems, "fingerprint": fingerprint_dict(compute_fingerprint_bytes(model_dir))}


def child_main(argv: list[str]) -> int:
    """The Verify stage's entry (child_process.run_child): MODEL_DIR INPUTS_NPZ GOLDEN_NPZ."""
    from tf_bigexport.transforms.child_process import Reporter, exit_with_parent
    from tf_bigexport.transforms.errors import describe
    exit_with_parent()
    reporter = Reporter()
    try:
        result = check(*argv, phase=lambda text: reporter.phase(text, "verify"))
    except Exception as e:  # reported as a verification problem by the parent
        import traceback
        traceback.print_exc()
        reporter.send(error=f"reloading the staged model failed: {describe(e)}", stage="verify")
        return 1
    reporter.send(result=result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m tf_bigexport.transforms.reload_check MODEL_DIR INPUTS_NPZ GOLDEN_NPZ", file=sys.stderr)
        return 2
    result = check(*argv)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
