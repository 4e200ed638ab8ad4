"""Batch inference throughput: our RunInference handler on a .cpb version against
Beam's own TensorFlow handler on the same model saved as a plain .pb.

  beam  apache_beam.ml.inference.tensorflow_inference.TFModelHandlerNumpy on saved_model.pb
  ours  tf_bigexport.inference.SavedModelHandlerNumpy on saved_model.cpb (large constants
        as separate chunks)

Same pipeline for both on the DirectRunner: Create(examples) | RunInference |
count, batches of exactly 256, after an untimed warm-up run of each; the best of
REPEATS alternating runs is kept. Prints examples per second and the ratio
ours / beam (target >= 0.9).

Two adaptations let Beam's handler run at all with this stack, and leave its
inference path (run_inference, default_numpy_inference_fn, batching) as is:
* beam.ml.inference.tensorflow_inference imports tensorflow_hub, which needs
  tf-keras, which needs the full `tensorflow` distribution (it would be
  installed over tensorflow-cpu); its only use here is hub.resolve(path), the
  identity for a local path, so a module with that function stands in for it.
* it loads with tf.keras.models.load_model, which in Keras 3 refuses SavedModel
  directories; load_model is overridden with tf.saved_model.load, what
  Keras 2's load_model returns for a SavedModel without Keras metadata.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import types

import numpy as np

TARGET = 0.9
EXAMPLES = 8_000
FEATURES = 256
HIDDEN = 1024
LAYERS = 4
BATCH = 256
REPEATS = 3


def _model():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [(FEATURES, HIDDEN)] + [(HIDDEN, HIDDEN)] * (LAYERS - 2) + [(HIDDEN, 10)]
    # Captured constants (4 MiB each): the .cpb holds them as separate chunks.
    weights = [tf.constant((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)) for shape in shapes]

    class Mlp(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="x")])
        def __call__(self, x):
            for w in weights[:-1]:
                x = tf.nn.relu(tf.matmul(x, w))
            return tf.nn.softmax(tf.matmul(x, weights[-1]))

    return Mlp()


def _beam_handler(pb_dir: str):
    sys.modules.setdefault("tensorflow_hub", types.SimpleNamespace(resolve=lambda path: path))
    import tensorflow as tf
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    class BeamTFHandler(TFModelHandlerNumpy):
        def load_model(self):
            return tf.saved_model.load(self._model_uri)

    return BeamTFHandler(pb_dir, min_batch_size=BATCH, max_batch_size=BATCH)


def _run(handler, examples) -> float:
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that, equal_to

    started = time.perf_counter()
    with beam.Pipeline() as p:
        count = (p | beam.Create(examples) | RunInference(handler)
                 | beam.Map(lambda result: 1) | beam.combiners.Count.Globally())
        assert_that(count, equal_to([len(examples)]))
    return time.perf_counter() - started


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from tf_bigexport import imageformat
    from tf_bigexport.inference import SavedModelHandlerNumpy

    scratch = tempfile.mkdtemp(prefix="bench-inference-")
    try:
        model = _model()
        pb_dir, cpb_dir = os.path.join(scratch, "pb"), os.path.join(scratch, "cpb")
        tf.saved_model.save(model, pb_dir)
        imageformat.save(model, cpb_dir, max_chunk_size=1 << 20)
        assert os.path.exists(os.path.join(cpb_dir, "saved_model.cpb"))
        examples = list(np.random.default_rng(1).standard_normal((EXAMPLES, FEATURES)).astype(np.float32))
        handlers = {"beam": _beam_handler(pb_dir),
                    "ours": SavedModelHandlerNumpy(cpb_dir, min_batch_size=BATCH, max_batch_size=BATCH)}
        for handler in handlers.values():
            _run(handler, examples[:BATCH * 4])  # warm-up: loading, tracing, thread pools
        seconds = {name: [] for name in handlers}
        for _ in range(REPEATS):
            for name, handler in handlers.items():
                seconds[name].append(_run(handler, examples))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rate = {name: EXAMPLES / min(times) for name, times in seconds.items()}
    print(f"model: {LAYERS} dense layers ({FEATURES}->{HIDDEN}->...->10), {EXAMPLES} examples, "
          f"batches of {BATCH}, best of {REPEATS}")
    print(f"{'handler':<44} {'examples/s':>11}")
    print(f"{'beam TFModelHandlerNumpy, saved_model.pb':<44} {rate['beam']:>11.0f}")
    print(f"{'ours SavedModelHandlerNumpy, saved_model.cpb':<44} {rate['ours']:>11.0f}")
    ratio = rate["ours"] / rate["beam"]
    print(f"ratio ours / beam = {ratio:.2f} (target >= {TARGET}) {'OK' if ratio >= TARGET else 'UNDER TARGET'}")


if __name__ == "__main__":
    main()
