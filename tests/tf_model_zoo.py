"""Small TensorFlow models the save/load tests run through every path.

Each case builds a fresh object, names the signatures to save, and says how to
call the original object and a loaded one so outputs can be compared.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class ModelCase:
    name: str
    build: Callable[[str], Any]          # workdir -> trackable object
    signatures: Callable[[Any], Any]     # object -> `signatures` argument (or None)
    call_original: Callable[[Any], dict[str, np.ndarray]]
    call_loaded: Callable[[Any], dict[str, np.ndarray]]


def _numpy(outputs: Any) -> dict[str, np.ndarray]:
    if isinstance(outputs, dict):
        return {key: np.asarray(value) for key, value in outputs.items()}
    return {"output_0": np.asarray(outputs)}


# --- tf.Module with variables: one signature -------------------------------

class Scaler(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = tf.Variable([1.5, -2.0, 3.0], name="scale")
        self.bias = tf.Variable(0.25, name="bias")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return x * self.scale + self.bias


_SCALER_INPUT = np.arange(12, dtype=np.float32).reshape(4, 3)


def _scaler_case() -> ModelCase:
    return ModelCase(
        name="one_signature",
        build=lambda workdir: Scaler(),
        signatures=lambda obj: obj.__call__,
        call_original=lambda obj: _numpy(obj(_SCALER_INPUT)),
        call_loaded=lambda loaded: {
            "output_0": loaded.signatures["serving_default"](x=tf.constant(_SCALER_INPUT))["output_0"].numpy()},
    )


# --- several signatures by dict, custom output names -----------------------

class MultiHead(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2), name="w")
        self.offset = tf.Variable([0.5, -0.5], name="offset")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def scores(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.matmul(features, self.w) + self.offset
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="n")])
    def count(self, n: tf.Tensor) -> tf.Tensor:
        return tf.range(n) * 2


_FEATURES = np.arange(8, dtype=np.float32).reshape(2, 4) / 7.0


def _multi_head_case() -> ModelCase:
    def call_loaded(loaded: Any) -> dict[str, np.ndarray]:
        scores = loaded.signatures["scores"](features=tf.constant(_FEATURES))
        count = loaded.signatures["count"](n=tf.constant(5, tf.int64))
        return {"logits": scores["logits"].numpy(), "probabilities": scores["probabilities"].numpy(),
                "count": count["output_0"].numpy()}

    def call_original(obj: Any) -> dict[str, np.ndarray]:
        scores = obj.scores(_FEATURES)
        return {"logits": scores["logits"].numpy(), "probabilities": scores["probabilities"].numpy(),
                "count": obj.count(tf.constant(5, tf.int64)).numpy()}

    return ModelCase(
        name="signature_dict",
        build=lambda workdir: MultiHead(),
        signatures=lambda obj: {"scores": obj.scores, "count": obj.count},
        call_original=call_original,
        call_loaded=call_loaded,
    )


# --- Keras MobileNet ---------------------------------------------------------

_IMAGES = np.random.default_rng(7).uniform(-1, 1, size=(2, 224, 224, 3)).astype(np.float32)


def _mobilenet_case() -> ModelCase:
    def build(workdir: str) -> Any:
        tf.keras.utils.set_random_seed(3)
        return tf.keras.applications.MobileNet(weights=None)

    def call_loaded(loaded: Any) -> dict[str, np.ndarray]:
        signature = loaded.signatures["serving_default"]
        (output,) = signature(tf.constant(_IMAGES)).values()
        return {"probabilities": output.numpy()}

    return ModelCase(
        name="mobilenet",
        build=build,
        signatures=lambda obj: None,
        call_original=lambda model: {"probabilities": model(_IMAGES, training=False).numpy()},
        call_loaded=call_loaded,
    )


# --- Keras text classifier: StringLookup, Embedding, LSTM --------------------
# The LSTM is a while loop over TensorList ops, and Keras 2 wraps it in functions
# marked for the CPU/GPU implementation selector; StringLookup is a lookup table
# Keras owns.

_TEXT_VOCABULARY = [f"w{i}" for i in range(40)]
_SENTENCES = np.array([[b"w1", b"w2", b"unknown", b"w39"], [b"w3", b"w3", b"w0", b"w7"]])


def _text_lstm_case() -> ModelCase:
    def build(workdir: str) -> Any:
        tf.keras.utils.set_random_seed(5)
        layers = tf.keras.layers
        words = tf.keras.Input(shape=(None,), dtype="string", name="words")
        ids = layers.StringLookup(vocabulary=_TEXT_VOCABULARY)(words)
        hidden = layers.LSTM(8)(layers.Embedding(len(_TEXT_VOCABULARY) + 1, 16)(ids))
        return tf.keras.Model(words, layers.Dense(3, activation="softmax")(hidden))

    return _keras_case("keras_text_lstm", build, _SENTENCES, "probabilities")


def _keras_case(name: str, build: Callable[[str], Any], inputs: np.ndarray, output: str) -> ModelCase:
    """A one-input Keras model saved with its default serving signature."""
    def call_loaded(loaded: Any) -> dict[str, np.ndarray]:
        (value,) = loaded.signatures["serving_default"](tf.constant(inputs)).values()
        return {output: value.numpy()}

    return ModelCase(
        name=name,
        build=build,
        signatures=lambda obj: None,
        call_original=lambda model: {output: np.asarray(model(tf.constant(inputs)))},
        call_loaded=call_loaded,
    )


# --- Keras transformer block: MultiHeadAttention, LayerNormalization, gelu ----

_TOKENS = np.random.default_rng(11).integers(0, 100, size=(2, 12)).astype(np.int32)


def _transformer_case() -> ModelCase:
    def build(workdir: str) -> Any:
        tf.keras.utils.set_random_seed(6)
        layers = tf.keras.layers
        tokens = tf.keras.Input(shape=(12,), dtype="int32", name="tokens")
        x = layers.Embedding(100, 32)(tokens)
        x = layers.LayerNormalization()(x + layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x))
        x = layers.LayerNormalization()(x + layers.Dense(32)(layers.Dense(64, activation="gelu")(x)))
        return tf.keras.Model(tokens, layers.Dense(5)(layers.GlobalAveragePooling1D()(x)))

    return _keras_case("keras_transformer", build, _TOKENS, "logits")


# --- StaticHashTable with a vocabulary asset --------------------------------

class Vocabulary(tf.Module):
    def __init__(self, vocab_path: str) -> None:
        super().__init__()
        initializer = tf.lookup.TextFileInitializer(
            vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
        self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def __call__(self, words: tf.Tensor) -> tf.Tensor:
        return self.table.lookup(words)


VOCABULARY = ["apple", "banana", "cherry", "date", "elderberry"]
_WORDS = np.array([b"cherry", b"apple", b"zucchini", b"elderberry"])


def _vocabulary_case() -> ModelCase:
    def build(workdir: str) -> Any:
        path = os.path.join(workdir, "vocab.txt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(VOCABULARY) + "\n")
        return Vocabulary(path)

    return ModelCase(
        name="vocabulary_table",
        build=build,
        signatures=lambda obj: obj.__call__,
        call_original=lambda obj: _numpy(obj(_WORDS)),
        call_loaded=lambda loaded: {
            "output_0": loaded.signatures["serving_default"](words=tf.constant(_WORDS))["output_0"].numpy()},
    )


# --- many functions -----------------------------------------------------------

class ManyFunctions(tf.Module):
    """Dozens of tf.functions, each with control flow (nested library functions)."""

    COUNT = 24

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.arange(4, dtype=np.float32), name="w")
        for index in range(self.COUNT):
            setattr(self, f"f{index:02d}", tf.function(
                self._make(index), input_signature=[tf.TensorSpec([4], tf.float32, name="x")]))

    def _make(self, index: int) -> Callable[[tf.Tensor], tf.Tensor]:
        def function(x: tf.Tensor) -> tf.Tensor:
            return tf.cond(tf.reduce_sum(x) > float(index),
                           lambda: x * self.w + float(index),
                           lambda: tf.map_fn(lambda t: t - float(index), x))
        return function


_VECTOR = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)


def _many_functions_case() -> ModelCase:
    def call(obj: Any) -> dict[str, np.ndarray]:
        return {f"f{i:02d}": getattr(obj, f"f{i:02d}")(tf.constant(_VECTOR)).numpy()
                for i in range(ManyFunctions.COUNT)}

    return ModelCase(
        name="many_functions",
        build=lambda workdir: ManyFunctions(),
        signatures=lambda obj: None,
        call_original=call,
        call_loaded=call,
    )


# --- the SavedModel guide's custom module (DESIGN.md user flow) -------------

class CustomModule(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.v = tf.Variable(1.0, name="v")

    @tf.function
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return x * self.v

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def mutate(self, new_v: tf.Tensor) -> None:
        self.v.assign(new_v)


def build_custom_module(workdir: str = "") -> CustomModule:
    module = CustomModule()
    module(tf.constant(0.0))  # traces __call__ for a float32 scalar only
    module.v.assign(2.5)
    return module


def _custom_module_case() -> ModelCase:
    def call(obj: Any) -> dict[str, np.ndarray]:
        return {"call": obj(tf.constant(4.0)).numpy()}

    return ModelCase(
        name="custom_module",
        build=build_custom_module,
        signatures=lambda obj: None,
        call_original=call,
        call_loaded=call,
    )


# --- captured constants: tensors made outside the functions that use them ------

class CapturedConstants(tf.Module):
    """Functions closing over eager tensors (captured constants), one through a nested call.

    TensorFlow saves such tensors as Const nodes of the program; the servable
    form moves them to the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(11)
        kernel = tf.constant(rng.standard_normal((16, 64)).astype(np.float32))    # 4 KiB
        projection = tf.constant(rng.standard_normal((64, 8)).astype(np.float32))  # 2 KiB
        codes = tf.constant(rng.integers(0, 1000, size=1024, dtype=np.int32))      # 4 KiB
        scale = tf.constant(np.float32(0.5))
        self.bias = tf.Variable(np.linspace(-1, 1, 8, dtype=np.float32), name="bias")

        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
        def embed(x: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(tf.matmul(x, kernel)) * scale

        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
        def score(x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": tf.matmul(embed(x), projection) + self.bias}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        def lookup(ids: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"codes": tf.gather(codes, ids)}

        self.embed, self.score, self.lookup = embed, score, lookup


_CAPTURE_INPUT = np.random.default_rng(12).standard_normal((3, 16)).astype(np.float32)
_IDS = np.array([0, 5, 1023, 17], dtype=np.int32)


def _captured_constants_case() -> ModelCase:
    def call_original(obj: Any) -> dict[str, np.ndarray]:
        return {"scores": obj.score(_CAPTURE_INPUT)["scores"].numpy(),
                "codes": obj.lookup(_IDS)["codes"].numpy(),
                "embedding": obj.embed(_CAPTURE_INPUT).numpy()}

    def call_loaded(loaded: Any) -> dict[str, np.ndarray]:
        return {"scores": loaded.signatures["score"](x=tf.constant(_CAPTURE_INPUT))["scores"].numpy(),
                "codes": loaded.signatures["lookup"](ids=tf.constant(_IDS))["codes"].numpy(),
                "embedding": loaded.embed(tf.constant(_CAPTURE_INPUT)).numpy()}

    return ModelCase(
        name="captured_constants",
        build=lambda workdir: CapturedConstants(),
        signatures=lambda obj: {"score": obj.score, "lookup": obj.lookup},
        call_original=call_original,
        call_loaded=call_loaded,
    )


CASES = [
    _scaler_case(),
    _multi_head_case(),
    _mobilenet_case(),
    _text_lstm_case(),
    _transformer_case(),
    _vocabulary_case(),
    _many_functions_case(),
    _custom_module_case(),
    _captured_constants_case(),
]
