"""Proof that a SavedModel is servable: stock TensorFlow loads it and every
signature gives outputs bitwise equal to the original model's.

The original's outputs come from the signature functions TensorFlow's save
exports (signature_serialization.canonicalize_signatures), called in the
test process on generated inputs. The loaders under test run in other
processes: stock Python TensorFlow (tests/stock_tensorflow_runner.py, which
never imports tf_bigexport) and ``saved_model_cli run``.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import numpy as np

TESTS = pathlib.Path(__file__).resolve().parent
STOCK_RUNNER = TESTS / "stock_tensorflow_runner.py"
_STRINGS = np.array([b"apple", b"cherry", b"token1", b"token7", b"zucchini"])
Arrays = dict[str, np.ndarray]  # "<signature>/<name>" -> array


def _clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def signature_functions(obj: Any, signatures: Any) -> dict[str, Any]:
    """The concrete functions TensorFlow's save exports as signatures of ``obj``."""
    from tensorflow.python.saved_model import save as save_lib  # pylint: disable=import-outside-toplevel
    from tensorflow.python.saved_model import signature_serialization  # pylint: disable=import-outside-toplevel
    if signatures is None:
        signatures = signature_serialization.find_function_to_export(
            save_lib._AugmentedGraphView(obj))  # pylint: disable=protected-access
    functions, _, _ = signature_serialization.canonicalize_signatures(signatures)
    return dict(functions)


def _input_for(spec: Any, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(2 if dim is None else dim for dim in spec.shape.as_list())
    dtype = spec.dtype.as_numpy_dtype
    if spec.dtype.is_floating:
        return rng.standard_normal(shape).astype(dtype)
    if spec.dtype.is_bool:
        return rng.random(shape) > 0.5
    if spec.dtype.is_integer:
        return rng.integers(0, 4, size=shape).astype(dtype)
    if spec.dtype.name == "string":
        return rng.choice(_STRINGS, size=shape)
    raise NotImplementedError(f"no generated input for {spec}")


def original_outputs(obj: Any, signatures: Any, seed: int = 0) -> tuple[Arrays, Arrays]:
    """(inputs, outputs) of every signature of the original ``obj``, computed in this process."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    inputs: Arrays = {}
    outputs: Arrays = {}
    for key, function in sorted(signature_functions(obj, signatures).items()):
        feeds = {name: _input_for(spec, rng) for name, spec in sorted(function.structured_input_signature[1].items())}
        result = function(**{name: tf.constant(value) for name, value in feeds.items()})
        inputs.update({f"{key}/{name}": value for name, value in feeds.items()})
        outputs.update({f"{key}/{name}": value.numpy() for name, value in result.items()})
    return inputs, outputs


def assert_bitwise_equal(actual: Arrays, expected: Arrays, what: str) -> None:
    assert sorted(actual) == sorted(expected), f"{what}: outputs {sorted(actual)} != {sorted(expected)}"
    for key, value in expected.items():
        got = actual[key]
        if value.dtype.kind in "OS":  # strings: object arrays from TensorFlow, fixed-width bytes from .npy files
            assert got.shape == value.shape and got.tolist() == value.tolist(), f"{what} {key}: differs"
            continue
        assert (got.dtype, got.shape) == (value.dtype, value.shape), f"{what} {key}: {got.dtype}{got.shape}"
        assert got.tobytes() == value.tobytes(), f"{what} {key}: not bitwise equal to the original model's output"


def _save_npz(path: pathlib.Path, arrays: Arrays) -> pathlib.Path:
    np.savez(path, **arrays)
    return path


def run_stock_python(models: list[tuple[pathlib.Path, Arrays]], workdir: pathlib.Path) -> list[Arrays]:
    """Outputs of every model's signatures, loaded by tf.saved_model.load in a
    process that never imports tf_bigexport (the runner checks sys.modules)."""
    argv: list[str] = []
    results = []
    for index, (model_dir, inputs) in enumerate(models):
        inputs_path = _save_npz(workdir / f"stock_inputs_{index}.npz", inputs)
        results.append(workdir / f"stock_outputs_{index}.npz")
        argv += [str(model_dir), str(inputs_path), str(results[-1])]
    proc = subprocess.run([sys.executable, str(STOCK_RUNNER), *argv], cwd=workdir, env=_clean_env(),
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"stock tf.saved_model.load failed:\n{proc.stderr[-3000:]}"
    outputs = []
    for path in results:
        with np.load(path) as data:
            outputs.append({key: data[key] for key in data.files})
    return outputs


def saved_model_cli() -> str:
    path = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert path, "saved_model_cli is not installed next to the Python running the tests"
    return path


def run_saved_model_cli(model_dir: pathlib.Path, inputs: Arrays, workdir: pathlib.Path) -> Arrays:
    """Outputs of every signature in ``inputs``, one ``saved_model_cli run`` per signature."""
    outputs: Arrays = {}
    signatures = sorted({key.split("/", 1)[0] for key in inputs})
    for index, signature in enumerate(signatures):
        feeds = []
        for key, value in inputs.items():
            if key.split("/", 1)[0] == signature:
                path = workdir / f"cli_{index}_{len(feeds)}.npy"
                np.save(path, value)
                feeds.append(f"{key.split('/', 1)[1]}={path}")
        outdir = workdir / f"cli_out_{index}"
        proc = subprocess.run([saved_model_cli(), "run", "--dir", str(model_dir), "--tag_set", "serve",
                               "--signature_def", signature, "--inputs", ";".join(feeds),
                               "--outdir", str(outdir), "--overwrite"],
                              cwd=workdir, env=_clean_env(), capture_output=True, text=True, timeout=1800,
                              check=False)
        assert proc.returncode == 0, f"saved_model_cli run {signature} failed:\n{proc.stderr[-3000:]}"
        for name in os.listdir(outdir):
            outputs[f"{signature}/{name[:-len('.npy')]}"] = np.load(outdir / name)
    return outputs


def run_cc_stock_loader(cc_build: Any, model_dir: pathlib.Path, inputs: Arrays, workdir: pathlib.Path) -> Arrays:
    """Outputs of every signature in ``inputs`` from TensorFlow's own C++
    ``tensorflow::LoadSavedModel`` (the pip wheel's libtensorflow_cc, through the
    runner of cc/ with ``--loader stock``), one process per signature."""
    outputs: Arrays = {}
    for index, signature in enumerate(sorted({key.split("/", 1)[0] for key in inputs})):
        feeds = {key.split("/", 1)[1]: value for key, value in inputs.items() if key.split("/", 1)[0] == signature}
        result = cc_build.call(model_dir, signature, feeds, workdir / f"cc_{index}", "--loader", "stock")
        outputs.update({f"{signature}/{name}": value for name, value in result.items()})
    return outputs
