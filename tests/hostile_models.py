"""Job factories for the hostile-input, fault and load tests (imported by the pipeline's trace stage)."""
from __future__ import annotations

import os
from typing import Any

# Written by side_effect_on_import when this module is imported with the variable set:
# inspect/verify must never get here.
IMPORT_MARKER_ENV = "HOSTILE_MODELS_IMPORT_MARKER"

if os.environ.get(IMPORT_MARKER_ENV):
    with open(os.environ[IMPORT_MARKER_ENV], "a", encoding="utf-8") as _marker:
        _marker.write(f"imported by pid {os.getpid()}\n")


def tiny_dense(seed: int = 0, inputs: int = 4, units: int = 3) -> Any:
    """y = x @ W + b with seeded weights: a model that builds and saves in well under a second."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class TinyDense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(rng.standard_normal((inputs, units)).astype(np.float32), name="kernel")
            self.bias = tf.Variable(rng.standard_normal(units).astype(np.float32), name="bias")

        def __call__(self, x):
            return {"y": tf.matmul(x, self.kernel) + self.bias}

    return TinyDense()


def writes_file_when_called(path: str) -> Any:
    """A model whose signature has a side effect inside the graph (a WriteFile op)."""
    import tensorflow as tf

    class Writer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(2.0)

        def __call__(self, x):
            tf.io.write_file(path, tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * self.scale}

    return Writer()


def raises_while_building() -> Any:
    raise RuntimeError("checkpoint shards are missing")


def returns_nothing() -> Any:
    return None
