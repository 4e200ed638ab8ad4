"""Real SavedModels for the splitter / merger / chunked-file tests.

Each case is saved once per test process with stock ``tf.saved_model.save``
into a temporary directory; tests read its saved_model.pb and compare against
it. The models are small but have every part the splitter handles: graph
Const nodes with tensor_content (captured constants), Const nodes inside
function bodies, many functions, variables and signatures.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

_ROOT = tempfile.mkdtemp(prefix="saved-model-cases-")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@dataclass(frozen=True)
class SavedCase:
    name: str
    directory: str  # TensorFlow's own plain save (saved_model.pb + variables/)
    inputs: dict  # signature "serving_default" keyword inputs
    expected: dict  # outputs of the original object for those inputs

    def proto(self) -> saved_model_pb2.SavedModel:
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(self.directory, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        return saved_model


class _Calculator(tf.Module):
    """Variable, a captured constant (graph Const) and constants in function bodies."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(np.linspace(0.5, 1.5, 64, dtype=np.float32))
        self.offsets = tf.constant(np.arange(3000, dtype=np.float32) / 3000.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])
    def __call__(self, x):
        table = tf.constant(np.sin(np.arange(64 * 40, dtype=np.float32)).reshape(40, 64))
        mixed = tf.matmul(x * self.scale, table, transpose_b=True)
        return {"mixed": mixed, "total": tf.reduce_sum(mixed, axis=1) + tf.reduce_sum(self.offsets)}

    @tf.function(input_signature=[tf.TensorSpec([64], tf.float32)])
    def mutate(self, new_scale):
        self.scale.assign(new_scale)
        return tf.constant(np.ones([500], np.int32))


def _calculator(directory: str) -> tuple[tf.Module, Callable]:
    module = _Calculator()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.__call__,
                                                       "mutate": module.mutate})
    return module, module.__call__


def _keras(directory: str) -> tuple[object, Callable]:
    import keras  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(4, name="logits")])
    tf.saved_model.save(model, directory)
    # The serving signature's output: Keras 3 numbers outputs, Keras 2 (TensorFlow 2.15) names the layer.
    output = "output_0" if keras.__version__.startswith("3.") else "logits"
    return model, lambda x: {output: model(x)}


_BUILDERS = {"calculator": _calculator, "keras": _keras}
CASE_NAMES = tuple(_BUILDERS)


@functools.lru_cache(maxsize=None)
def saved_case(name: str) -> SavedCase:
    directory = os.path.join(_ROOT, name)
    _, call = _BUILDERS[name](directory)
    x = np.cos(np.arange(3 * 64, dtype=np.float32)).reshape(3, 64)
    expected = {key: np.asarray(value) for key, value in call(tf.constant(x)).items()}
    key = "x" if name == "calculator" else "keras_tensor"
    return SavedCase(name, directory, {key: x}, expected)


def serving_outputs(export_dir: str, inputs: dict) -> dict:
    """Loads ``export_dir`` with stock TensorFlow and runs signature serving_default."""
    loaded = tf.saved_model.load(export_dir)
    function = loaded.signatures["serving_default"]
    arg_names = list(function.structured_input_signature[1])
    feed = {arg: tf.constant(value) for arg, value in zip(arg_names, inputs.values())}
    return {key: np.asarray(value) for key, value in function(**feed).items()}


def copy_without_program(src: str, dst: str) -> str:
    """Copies a SavedModel directory except saved_model.pb/.cpb (variables, assets...)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("saved_model.pb", "saved_model.cpb",
                                                            "fingerprint.pb"))
    return dst
