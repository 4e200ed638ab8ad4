"""Keras models whose inputs are named (a dict) or several (a list), from a jobs
file: the calling convention is detected from the model or declared, the
published model has Keras's `serve` endpoint, and an ExportArchive's endpoints
work as methods. The documented example (docs/examples/keras.yaml) runs here."""
from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.jobs import load_jobs_file, parse_jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")


def test_the_documented_multi_input_keras_example(tmp_path, capsys):
    import tensorflow as tf

    from tf_bigexport import imageformat
    registry = tmp_path / "registry"
    code = cli.main(["run", "--jobs", os.path.join(EXAMPLES, "keras.yaml"), "--registry", str(registry),
                     "--work_dir", str(tmp_path / "work")])
    assert code == cli.EXIT_OK, capsys.readouterr()
    loaded = imageformat.load(str(registry / "keras-multi-input" / "1"))
    serving = loaded.signatures["serving_default"]
    assert sorted(serving.structured_input_signature[1]) == ["image", "meta"]
    rng = np.random.default_rng(3)
    inputs = {"image": rng.random((2, 32, 32, 3), dtype=np.float32), "meta": rng.random((2, 4), dtype=np.float32)}
    by_signature = serving(**{k: tf.constant(v) for k, v in inputs.items()})["output_0"].numpy()
    by_serve = loaded.serve({k: tf.constant(v) for k, v in inputs.items()}).numpy()  # as keras.Model.export has it

    import sys
    sys.path.insert(0, EXAMPLES)
    try:
        from keras_multi_input import build
    finally:
        sys.path.remove(EXAMPLES)
    expected = build(classes=3)(inputs).numpy()
    np.testing.assert_allclose(by_signature, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_serve, expected, rtol=1e-5, atol=1e-6)


FACTORIES = textwrap.dedent("""\
    import keras
    import tensorflow as tf

    def two_list_inputs():
        keras.utils.set_random_seed(1)
        a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(2,), name="b")
        return keras.Model(inputs=[a, b], outputs=keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))

    def named_inputs():
        keras.utils.set_random_seed(2)
        image, meta = keras.Input(shape=(4, 4, 1), name="image"), keras.Input(shape=(2,), name="meta")
        joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
        return keras.Model(inputs={"image": image, "meta": meta}, outputs={"p": keras.layers.Dense(2)(joined)})

    def archive():
        model = named_inputs()
        export = keras.export.ExportArchive()
        export.track(model)
        export.add_endpoint("classify", lambda inputs: model(inputs), input_signature=[{
            "image": tf.TensorSpec([None, 4, 4, 1], tf.float32, name="image"),
            "meta": tf.TensorSpec([None, 2], tf.float32, name="meta")}])
        return export
    """)
NAMED = [{"name": "image", "dtype": "float32", "shape": [None, 4, 4, 1]},
         {"name": "meta", "dtype": "float32", "shape": [None, 2]}]
GENERATE = {"generate": {"seed": 0, "batch": 2}}


def test_list_dict_and_export_archive_inputs_detected_or_declared(tmp_path):
    (tmp_path / "keras_factories.py").write_text(FACTORIES)
    jobs = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [
        {"name": "list", "factory": "keras_factories:two_list_inputs",
         "signatures": {"serving_default": [{"name": "a", "dtype": "float32", "shape": [None, 3]},
                                            {"name": "b", "dtype": "float32", "shape": [None, 2]}]},
         "sample_inputs": {"serving_default": GENERATE}},
        {"name": "dict-declared", "factory": "keras_factories:named_inputs",
         "signatures": {"serving_default": {"inputs": NAMED, "inputs_as": "dict"}},
         "sample_inputs": {"serving_default": GENERATE}},
        {"name": "archive", "factory": "keras_factories:archive",
         "signatures": {"serving_default": {"method": "classify", "inputs": NAMED}},
         "sample_inputs": {"serving_default": GENERATE}},
        {"name": "wrong-names", "factory": "keras_factories:named_inputs",
         "signatures": {"serving_default": [dict(NAMED[0], name="img"), NAMED[1]]}},
    ]}, base_dir=str(tmp_path))
    outcomes = {o["model_name"]: o for o in run_export(jobs, ["--work_dir", str(tmp_path / "work")])}
    for name in ("list", "dict-declared", "archive"):
        assert outcomes[name]["status"] == "published", outcomes[name]
    wrong = outcomes["wrong-names"]
    assert (wrong["status"], wrong["stage"]) == ("failed", "trace")
    assert ("field 'signatures.serving_default': the model's __call__ takes inputs named ['image', 'meta'], "
            "the jobs file declares ['img', 'meta']") in wrong["error"]


def test_inputs_as_is_validated():
    with pytest.raises(Exception) as info:
        parse_jobs({"registry": "r", "jobs": [{"name": "m", "factory": "a.b:c", "signatures": {
            "s": {"inputs": NAMED, "inputs_as": "dcit"}}}]}, source="jobs.yaml")
    assert ("jobs.yaml: job 'm' field 'signatures.s.inputs_as': must be one of auto, positional, list, dict, "
            "got 'dcit' (did you mean 'dict'?)") in str(info.value)


def test_the_keras_example_jobs_file_is_valid():
    [job] = load_jobs_file(os.path.join(EXAMPLES, "keras.yaml"), default_registry="/tmp/r")
    assert [i.name for i in job.signatures[0].inputs] == ["image", "meta"] and job.signatures[0].inputs_as == "auto"
