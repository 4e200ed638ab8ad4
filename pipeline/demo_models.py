"""Built-in demo models (factories for jobs files) and the demo's jobs.

Each factory is small enough to build in seconds on two cores, except
``large_constants`` (``demo --large``), whose proto is past 2 GiB.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import Any

import numpy as np

DEMO_VOCABULARY = [f"token{i}" for i in range(12)]


def mobilenet_classifier(classes: int = 10, image_size: int = 96, alpha: float = 0.25) -> Any:
    """A Keras image classifier with random weights (no downloads)."""
    import keras
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(weights=None, input_shape=(image_size, image_size, 3),
                                         alpha=alpha, classes=classes)
    # Freshly initialized, the activations shrink to ~1e-17 by the last layer and
    # every image gets the same uniform scores. One training-mode pass with
    # momentum 0 sets each batch norm's statistics from sample images, so the
    # untrained classifier still tells images apart (and golden outputs mean something).
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(np.random.default_rng(0).random((8, image_size, image_size, 3), dtype=np.float32), training=True)
    for layer in batch_norms:
        layer.momentum = 0.99
    return model


def vocabulary_module(vocabulary: list[str] | None = None) -> Any:
    """A tf.Module with two signatures, a vocabulary asset and a lookup table."""
    import tensorflow as tf

    words = vocabulary or DEMO_VOCABULARY
    vocab_dir = tempfile.mkdtemp(prefix="tf-bigexport-vocab-")
    vocab_path = os.path.join(vocab_dir, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")

    class VocabularyModel(tf.Module):
        def __init__(self):
            super().__init__()
            self.vocab = tf.saved_model.Asset(vocab_path)
            initializer = tf.lookup.TextFileInitializer(
                self.vocab, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
            self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)
            self.weight = tf.Variable(0.5, name="weight")

        def __call__(self, tokens):
            ids = self.table.lookup(tokens)
            return {"ids": ids, "known": ids >= 0}

        def score(self, tokens):
            known = tf.cast(self.table.lookup(tokens) >= 0, tf.float32)
            return {"score": tf.reduce_sum(known, axis=-1) * self.weight}

    model = VocabularyModel()
    # The asset file is needed until the model is saved (saving copies it into the SavedModel);
    # it goes with the model, or at the latest when the process exits.
    weakref.finalize(model, shutil.rmtree, vocab_dir, True)
    return model


def split_constants(count: int = 16, size: int = 256, seed: int = 0) -> Any:
    """A tf.Module whose function captures ``count`` size x size float constants
    (4 MiB by default): saved with a small split_threshold, its proto is split."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    weights = [tf.constant((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32))
               for _ in range(count)]

    class ConstantsModel(tf.Module):
        def __call__(self, x):
            for w in weights:  # captured tensors become Const nodes of the saved graph
                x = tf.tanh(tf.matmul(x, w))
            return {"features": x}

    return ConstantsModel()


def large_constants(count: int = 3, megabytes_each: int = 800) -> Any:
    """A tf.Module capturing ``count`` constants of ``megabytes_each`` MB: its
    proto is past 2 GiB, so only the image format can hold it."""
    import tensorflow as tf

    length = megabytes_each * (1 << 20) // 4
    # float32 scalars: numpy 1.x (TensorFlow 2.16/2.17) would promote "array / int" to float64
    constants = [tf.constant(np.arange(length, dtype=np.float32) * np.float32(i + 1) / np.float32(length))
                 for i in range(count)]

    class LargeConstantsModel(tf.Module):
        def __call__(self, x):
            # One add per output element, not a chain: TensorFlow's C++ sessions rewrite a
            # chain of adds into AddN, whose other order rounds differently, so outputs of
            # stock servers would not be bitwise those of the model.
            return {"shifted": tf.concat([x + c[:4] for c in constants], axis=-1)}

    return LargeConstantsModel()


def demo_jobs(registry: str, *, large: bool = False) -> dict[str, Any]:
    """The demo's jobs document (the same schema as a jobs file)."""
    jobs: list[dict[str, Any]] = [
        {
            "name": "mobilenet",
            "factory": "tf_bigexport.pipeline.demo_models:mobilenet_classifier",
            "signatures": {"serving_default": [{"name": "images", "dtype": "float32", "shape": [None, 96, 96, 3]}]},
            "sample_inputs": {"serving_default": {"generate": {"seed": 0, "batch": 2}}},
            # 256 KiB shards: its 0.9 MB checkpoint is written as several files, as a large model's is.
            "max_shard_size": 1 << 18,
            "tags": {"demo": "keras-image-classifier"},
        },
        {
            "name": "vocab",
            "factory": "tf_bigexport.pipeline.demo_models:vocabulary_module",
            "signatures": {
                "serving_default": [{"name": "tokens", "dtype": "string", "shape": [None]}],
                "score": {"method": "score", "inputs": [{"name": "tokens", "dtype": "string", "shape": [None, None]}]},
            },
            "sample_inputs": {
                "serving_default": {"tokens": ["token1", "token7", "not-in-vocab"]},
                "score": {"generate": {"seed": 1, "batch": 3}},
            },
            # Both signatures' sample inputs as TensorFlow Serving's warmup requests (assets.extra/).
            "serving_warmup": True,
            "tags": {"demo": "two-signatures-and-vocab-asset"},
        },
        {
            "name": "split",
            "factory": "tf_bigexport.pipeline.demo_models:split_constants",
            "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 256]}]},
            "sample_inputs": {"serving_default": {"generate": {"seed": 2, "batch": 2}}},
            # The image format, with a 1 MiB threshold: the 4 MiB of constants are split into chunks.
            "split_threshold": 1 << 20,
            "format": "image",
            "tags": {"demo": "proto-split-into-chunks"},
        },
    ]
    if large:
        jobs.append({
            "name": "large",
            "factory": "tf_bigexport.pipeline.demo_models:large_constants",
            "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 4]}]},
            "sample_inputs": {"serving_default": {"generate": {"seed": 3, "batch": 2}}},
            "tags": {"demo": "proto-past-2GiB"},
        })
    return {"registry": registry, "jobs": jobs}
