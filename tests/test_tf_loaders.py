"""TensorFlow's own Python loaders on a saved_model.cpb, after imageformat.enable().

enable() is process-wide and meant to stay on, so each case runs in a fresh
interpreter: Keras's TFSMLayer gives the outputs imageformat.load gives, and
TFLite's converter refuses the .cpb naming the directory and `tf-bigexport
convert` (it reads through TensorFlow's C++ loader, which no patch reaches).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import imageformat

sys.path.insert(0, os.path.dirname(__file__))
import tf_model_zoo  # noqa: E402
from hostile_testkit import child_env  # noqa: E402

INPUT = np.arange(12, dtype=np.float32).reshape(4, 3)


@pytest.fixture(scope="module")
def scaler_cpb(tmp_path_factory) -> Path:
    model = tf_model_zoo.Scaler()
    export_dir = tmp_path_factory.mktemp("scaler") / "cpb"
    imageformat.save(model, str(export_dir), signatures=model.__call__, max_chunk_size=256)
    assert (export_dir / "saved_model.cpb").exists()
    return export_dir


def run_child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


KERAS_MAJOR = int(importlib.metadata.version("keras").split(".")[0])


@pytest.mark.skipif(KERAS_MAJOR < 3, reason="TFSMLayer is Keras 3's; Keras 2 (TensorFlow 2.15) has none")
def test_keras_tfsmlayer_reads_a_cpb_once_enabled(scaler_cpb, tmp_path):
    result = run_child("""
        import json, sys
        import numpy as np, keras
        from tf_bigexport import imageformat
        export_dir, out = sys.argv[1], sys.argv[2]
        try:
            keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")
            before = "loaded"
        except Exception as e:
            before = f"{type(e).__name__}: {e}"
        imageformat.enable()
        layer = keras.layers.TFSMLayer(export_dir, call_endpoint="serving_default")
        outputs = layer(np.arange(12, dtype=np.float32).reshape(4, 3))
        np.save(out, np.asarray(outputs["output_0"]))
        print(json.dumps({"before": before}))
    """, str(scaler_cpb), str(tmp_path / "out.npy"))
    assert "does not exist" in result["before"]  # without enable(): TensorFlow finds no saved_model.pb
    expected = imageformat.load(str(scaler_cpb)).signatures["serving_default"](x=tf.constant(INPUT))["output_0"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected.numpy())


def test_tflite_converter_refuses_a_cpb_naming_convert(scaler_cpb, tmp_path):
    plain = tmp_path / "pb"
    model = tf_model_zoo.Scaler()
    tf.saved_model.save(model, str(plain), signatures=model.__call__)
    result = run_child("""
        import json, sys
        import tensorflow as tf
        from tf_bigexport import imageformat
        imageformat.enable()
        outcome = {}
        for name in sys.argv[1:]:
            try:
                outcome[name] = len(tf.lite.TFLiteConverter.from_saved_model(name).convert())
            except ValueError as e:
                outcome[name] = str(e)
        print(json.dumps(outcome))
    """, str(scaler_cpb), str(plain))
    message = result[str(scaler_cpb)]
    assert isinstance(message, str) and message.startswith(f"{scaler_cpb}: holds saved_model.cpb"), message
    assert "tf-bigexport convert" in message and "servable form" in message
    assert isinstance(result[str(plain)], int) and result[str(plain)] > 0  # a plain .pb still converts
