"""Sample inputs of a job as numpy arrays, checked against its declared TensorSpecs.

A signature's samples are generated from a seed, read from an ``.npz``, or
given per input (an ``.npy`` path or an inline list). Jobs-file validation
loads them (jobs.py), so a file that is missing or does not fit the declared
dtype and shape is reported with the other problems of the file, before any
work; the arrays then travel with the job spec.
"""
from __future__ import annotations

import math
import os
import stat
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # the schema's declarations; this module needs only their fields
    from tf_bigexport.pipeline.jobs import SampleInputsDecl, TensorSpecDecl

# A generated sample's unknown leading dimension is the batch; other unknown dimensions are this.
GENERATED_UNKNOWN_DIM = 4
# Samples travel with the job (and through Beam): a few batches, not a data set.
MAX_SAMPLE_BYTES = 64 << 20  # per signature


class SampleProblems(ValueError):
    """``problems`` holds (field below the signature's sample_inputs entry or "", reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" if field else reason for field, reason in problems))


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype used to hold values for a declared TensorFlow dtype."""
    if dtype == "string":
        return np.dtype(object)
    if dtype == "bfloat16":
        return np.dtype(np.float32)  # converted by TensorFlow when fed
    return np.dtype(dtype)


def load_samples(decl: "SampleInputsDecl", inputs: Sequence["TensorSpecDecl"]) -> dict[str, np.ndarray]:
    """Input name -> array for one signature; raises SampleProblems naming each bad input."""
    problems: list[tuple[str, str]] = []
    arrays: dict[str, np.ndarray] = {}
    budget = _Budget(MAX_SAMPLE_BYTES)
    if decl.generate is not None:
        rng = np.random.default_rng(decl.generate.seed)
        for spec in inputs:
            problem = budget.take(generated_bytes(spec, decl.generate.batch))
            if problem:
                problems.append((spec.name, f"generated samples would be {problem}"))
                break
            arrays[spec.name] = generate(rng, spec, decl.generate.batch)
    elif decl.npz_path is not None:
        try:
            _regular_file(decl.npz_path)
            with np.load(decl.npz_path, allow_pickle=False) as npz:
                for spec in inputs:
                    if spec.name not in npz.files:
                        problems.append(("", f"{decl.npz_path} has no array {spec.name!r} (has {sorted(npz.files)})"))
                        continue
                    # The declared size, before decompressing: a small .npz can inflate to gigabytes.
                    problem = budget.take(npz.zip.getinfo(f"{spec.name}.npy").file_size)
                    if problem:
                        problems.append(("", f"{decl.npz_path}: {problem}"))
                        break
                    arrays[spec.name] = npz[spec.name]
        except (OSError, ValueError, KeyError) as e:
            problems.append(("", f"cannot read {decl.npz_path}: {e}"))
    else:
        for spec in inputs:
            value = decl.per_input[spec.name]
            if isinstance(value, str):
                try:
                    problem = budget.take(_regular_file(value))
                    if problem:
                        problems.append((spec.name, f"{value}: {problem}"))
                        continue
                    arrays[spec.name] = np.load(value, allow_pickle=False)
                except (OSError, ValueError) as e:
                    problems.append((spec.name, f"cannot read {value}: {e}"))
            else:
                try:
                    arrays[spec.name] = np.asarray(value, dtype=numpy_dtype(spec.dtype))
                except (TypeError, ValueError, OverflowError) as e:
                    problems.append((spec.name, f"not a {spec.dtype} array: {e}"))
    for spec in inputs:
        if spec.name in arrays:
            fitted, problem = fit(arrays[spec.name], spec)
            if problem:
                problems.append((spec.name, problem))
            arrays[spec.name] = fitted
    if problems:
        raise SampleProblems(problems)
    return arrays


def _regular_file(path: str) -> int:
    """The size of ``path``; OSError for a FIFO, device or directory (they could block or never end)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    return info.st_size


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit

    def take(self, size: int) -> str | None:
        """None, or why ``size`` more bytes are too many."""
        self.left -= size
        if self.left < 0:
            return f"more than {self.limit >> 20} MiB of sample inputs for one signature"
        return None


def generated_shape(spec: "TensorSpecDecl", batch: int) -> tuple[int, ...]:
    return tuple(batch if (d is None and i == 0) else (GENERATED_UNKNOWN_DIM if d is None else d)
                 for i, d in enumerate(spec.shape))


def generated_bytes(spec: "TensorSpecDecl", batch: int) -> int:
    itemsize = 16 if spec.dtype == "string" else numpy_dtype(spec.dtype).itemsize
    return math.prod(generated_shape(spec, batch)) * itemsize


def generate(rng: np.random.Generator, spec: "TensorSpecDecl", batch: int) -> np.ndarray:
    """Seeded values of the declared dtype: strings "token<N>", integers 0..9, normal floats."""
    shape = generated_shape(spec, batch)
    if spec.dtype == "string":
        words = rng.integers(0, 16, size=shape)
        return np.vectorize(lambda w: f"token{w}".encode(), otypes=[object])(words) if words.size else \
            np.empty(shape, dtype=object)
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if spec.dtype.startswith(("int", "uint")):
        return rng.integers(0, 10, size=shape).astype(spec.dtype)
    if spec.dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(spec.dtype)
    return rng.standard_normal(shape).astype(numpy_dtype(spec.dtype))


def fit(array: np.ndarray, spec: "TensorSpecDecl") -> tuple[np.ndarray, str | None]:
    """(the array in the dtype fed to TensorFlow, None) or (the array, why it does not fit the spec)."""
    if len(array.shape) != len(spec.shape) or any(
            d is not None and d != a for d, a in zip(spec.shape, array.shape)):
        return array, f"shape {list(array.shape)} does not fit declared {list(spec.shape)}"
    if spec.dtype == "string":
        if array.dtype.kind not in "OSU":
            return array, f"expected strings, got {array.dtype}"
        if not array.size:
            return array.astype(object), None
        return np.vectorize(lambda s: s if isinstance(s, bytes) else str(s).encode(), otypes=[object])(array), None
    if array.dtype.kind in "OSU":
        return array, f"expected {spec.dtype}, got {array.dtype}"
    return array.astype(numpy_dtype(spec.dtype), copy=False), None


