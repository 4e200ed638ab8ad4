"""Publishing an existing SavedModel: a job's `saved_model` (instead of a factory)
is loaded, .pb or .cpb, TensorFlow 2 or 1, local or from object storage, and
published with its own signatures through the same trace, save, reload check
and commit as any job.
"""
from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.jobs import JobsFileError, load_jobs_file, parse_jobs
from tf_bigexport.pipeline.preflight import PreflightError

TOKENS = [{"name": "tokens", "dtype": "string", "shape": [None]}]
TOKEN_ROWS = [{"name": "tokens", "dtype": "string", "shape": [None, None]}]
SAMPLES = {"serving_default": {"tokens": ["token2", "nope", "token7"]},
           "score": {"tokens": [["token1", "x"], ["token3", "token4"]]}}
X = np.linspace(-1, 1, 512, dtype=np.float32).reshape(2, 256)


def _job(name: str, source: str, **extra) -> dict:
    return {"name": name, "saved_model": source, "sample_inputs": SAMPLES,
            "signatures": {"serving_default": TOKENS, "score": TOKEN_ROWS}, **extra}


def test_jobs_file_rules_for_saved_model(tmp_path):
    [job] = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [_job("m", "trained/m")]},
                       source="jobs.yaml", base_dir=str(tmp_path))
    assert job.factory is None and job.saved_model == str(tmp_path / "trained" / "m")
    assert {s.key: s.method for s in job.signatures} == {"serving_default": "signatures", "score": "signatures"}

    bad = [
        (_job("both", "x", factory="pkg.mod:build"), "field 'saved_model': give either factory or saved_model"),
        (_job("kwargs", "x", factory_kwargs={"a": 1}), "field 'factory_kwargs': does not go with saved_model"),
        (_job("ckpt", "x", checkpoint="ckpt/c-1"), "field 'checkpoint': does not go with saved_model"),
        (_job("empty", " "), "field 'saved_model': must be a SavedModel directory"),
        (dict(_job("by-list", "x"), signatures={"serving_default": {"inputs": TOKENS, "inputs_as": "list"}}),
         "field 'signatures.serving_default.inputs_as': a saved signature takes its inputs by name"),
        ({"name": "neither", "signatures": {"serving_default": TOKENS}},
         "field 'factory': required: 'package.module:function' (or saved_model: a SavedModel to publish)"),
    ]
    for raw, message in bad:
        with pytest.raises(JobsFileError) as info:
            parse_jobs({"registry": str(tmp_path), "jobs": [raw]}, source="jobs.yaml")
        assert any(message in p and f"job {raw['name']!r}" in p for p in info.value.problems), info.value.problems


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo's vocabulary model (two signatures, a vocabulary asset, a variable) saved the way
    a training job leaves it, stock .pb and .cpb, and its outputs on the sample inputs."""
    import tensorflow as tf

    from tf_bigexport import imageformat
    from tf_bigexport.pipeline.demo_models import split_constants, vocabulary_module

    root = tmp_path_factory.mktemp("trained")
    module = vocabulary_module()
    signatures = {"serving_default": tf.function(module.__call__, input_signature=[tf.TensorSpec([None], tf.string)]),
                  "score": tf.function(module.score, input_signature=[tf.TensorSpec([None, None], tf.string)])}
    tf.saved_model.save(module, str(root / "pb"), signatures=signatures)
    imageformat.save(module, str(root / "cpb"), signatures=signatures, max_chunk_size=4096)
    assert (root / "cpb" / "saved_model.cpb").is_file()
    expected = {key: {name: value.numpy() for name, value in
                      signatures[key](tf.constant(next(iter(SAMPLES[key].values())))).items()}
                for key in signatures}
    # 4 MiB of captured constants, in the program: an image-format .cpb at a 1 MiB split threshold.
    constants = split_constants()
    serving = tf.function(constants.__call__, input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")])
    imageformat.save(constants, str(root / "constants"), signatures=serving, max_chunk_size=1 << 20)
    assert (root / "constants" / "saved_model.cpb").is_file()
    expected["constants"] = next(iter(serving(tf.constant(X)).values())).numpy()
    _save_tf1(str(root / "tf1"))
    return root, expected


def _save_tf1(export_dir: str) -> None:
    """A TensorFlow 1 SavedModel (Session, placeholders, a lookup table initialised by its main op),
    as estimators and older hub modules left them."""
    import tensorflow as tf
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        words = v1.placeholder(tf.string, [None], name="words")
        weights = v1.get_variable("w", initializer=tf.constant([[1.0], [2.0], [3.0]]))
        table = v1.lookup.StaticHashTable(v1.lookup.KeyValueTensorInitializer(["a", "b"], [1, 2]), -1)
        session.run([v1.global_variables_initializer(), v1.tables_initializer()])
        builder = v1.saved_model.Builder(export_dir)
        builder.add_meta_graph_and_variables(
            session, ["serve"], main_op=v1.tables_initializer(), signature_def_map={
                "serving_default": v1.saved_model.predict_signature_def(
                    {"x": x, "words": words}, {"y": tf.matmul(x, weights), "ids": table.lookup(words)})})
        builder.save()


def _outputs(version_dir: str) -> dict:
    """The vocabulary model's outputs on the sample inputs."""
    import tensorflow as tf

    from tf_bigexport import imageformat
    loaded = imageformat.load(version_dir)
    return {key: {name: value.numpy() for name, value in
                  loaded.signatures[key](tokens=tf.constant(next(iter(SAMPLES[key].values())))).items()}
            for key in SAMPLES}


def _assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert sorted(actual[key]) == sorted(expected[key]), key
        for name in expected[key]:
            np.testing.assert_array_equal(actual[key][name], expected[key][name], err_msg=f"{key}/{name}")


def test_local_pb_and_cpb_published_with_their_own_signatures(trained, tmp_path):
    root, expected = trained
    registry = tmp_path / "reg"
    jobs = parse_jobs({"registry": str(registry), "jobs": [
        _job("from-pb", str(root / "pb"), serving_warmup=True),
        _job("from-cpb", f"file://{root / 'cpb'}", format="image", split_threshold=4096),
        dict(_job("renamed", str(root / "pb")), signatures={"serving_default": [dict(TOKENS[0], name="words")]},
             sample_inputs={}),
        dict(_job("no-such-key", str(root / "pb")), signatures={"classify": TOKENS}, sample_inputs={}),
        {"name": "servable", "saved_model": str(root / "constants"), "split_threshold": 1 << 20,
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 256]}]},
         "sample_inputs": {"serving_default": {"x": X.tolist()}}},
        {"name": "tf1", "saved_model": str(root / "tf1"), "signatures": {"serving_default": [
            {"name": "x", "dtype": "float32", "shape": [None, 3]}, {"name": "words", "dtype": "string", "shape": [None]}]},
         "sample_inputs": {"serving_default": {"x": [[1, 1, 1]], "words": ["b", "unknown"]}}},
    ]}, source="jobs.yaml")
    outcomes = {o["model_name"]: o for o in run_export(jobs, ["--work_dir", str(tmp_path / "work")])}

    assert outcomes["from-pb"]["status"] == "published", outcomes["from-pb"]
    assert outcomes["from-pb"]["proto_file"] == "saved_model.pb"
    assert outcomes["from-cpb"]["status"] == "published", outcomes["from-cpb"]
    assert outcomes["from-cpb"]["proto_file"] == "saved_model.cpb"
    for name in ("from-pb", "from-cpb"):
        version = registry / name / "1"
        assert (version / "assets" / "vocab.txt").is_file()  # the asset came along
        _assert_same(_outputs(str(version)), {key: expected[key] for key in SAMPLES})
    assert (registry / "from-pb" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()

    # An image-format version whose constants made it large comes out servable: a plain .pb.
    assert outcomes["servable"]["status"] == "published", outcomes["servable"]
    assert outcomes["servable"]["proto_file"] == "saved_model.pb"
    import tensorflow as tf
    stock = tf.saved_model.load(str(registry / "servable" / "1")).signatures["serving_default"]
    np.testing.assert_array_equal(next(iter(stock(x=tf.constant(X)).values())).numpy(), expected["constants"])

    # A TensorFlow 1 SavedModel comes out a TensorFlow 2 one, its table initialised on load.
    assert outcomes["tf1"]["status"] == "published", outcomes["tf1"]
    tf1 = tf.saved_model.load(str(registry / "tf1" / "1")).signatures["serving_default"]
    got = tf1(x=tf.constant([[1.0, 1.0, 1.0]]), words=tf.constant(["b", "unknown"]))
    np.testing.assert_array_equal(got["y"].numpy(), [[6.0]])
    np.testing.assert_array_equal(got["ids"].numpy(), [2, -1])

    # What the saved signature takes is in the message, ready to be copied into the jobs file.
    assert outcomes["renamed"]["status"] == "failed"
    assert ("field 'signatures.serving_default': the saved signature takes tokens: string[None]; "
            "the jobs file declares words: string[None]") in outcomes["renamed"]["error"]
    assert outcomes["no-such-key"]["status"] == "failed"
    assert ("field 'signatures.classify': the model has no saved signature 'classify' "
            "(it has: score, serving_default)") in outcomes["no-such-key"]["error"]


def test_a_published_version_in_object_storage_is_the_source(trained, gcs_emulator, tmp_path):
    """Republished from gs:// (downloaded and checked against its release record), into the same bucket."""
    root, expected = trained
    registry = gcs_emulator.uri(f"source-{uuid.uuid4().hex[:8]}")
    options = ["--storage_options", json.dumps(dict(gcs_emulator.storage_options))]
    first = parse_jobs({"registry": registry, "jobs": [_job("trained", str(root / "pb"))]}, source="a.yaml")
    [outcome] = run_export(first, [*options, "--work_dir", str(tmp_path / "work-a")])
    assert outcome["status"] == "published", outcome

    second = parse_jobs({"registry": registry, "jobs": [_job("released", f"{registry}/trained/1")]}, source="b.yaml")
    [outcome] = run_export(second, [*options, "--work_dir", str(tmp_path / "work-b")])
    assert outcome["status"] == "published", outcome
    from tf_bigexport import storage
    with storage.local_directory(f"{registry}/released/1", dict(gcs_emulator.storage_options)) as local:
        _assert_same(_outputs(local), {key: expected[key] for key in SAMPLES})


def test_inspect_job_prints_a_jobs_file_that_publishes_the_savedmodel(trained, tmp_path, capsys, monkeypatch):
    import yaml

    from tf_bigexport.pipeline import cli
    root, _ = trained
    monkeypatch.chdir(root)
    assert cli.main(["inspect", "pb", "--job"]) == cli.EXIT_OK
    written = tmp_path / "jobs.yaml"
    written.write_text(capsys.readouterr().out)
    document = yaml.safe_load(written.read_text())
    assert document["jobs"][0]["saved_model"] == str(root / "pb")  # absolute: the file may go anywhere
    [job] = load_jobs_file(written, default_registry=str(tmp_path / "reg"))
    assert job.name == "pb" and job.saved_model == str(root / "pb")
    assert {s.key: [(i.name, i.dtype, i.shape) for i in s.inputs] for s in job.signatures} == {
        "serving_default": [("tokens", "string", (None,))], "score": [("tokens", "string", (None, None))]}


def test_preflight_refuses_a_source_that_is_no_savedmodel_before_any_work(trained, tmp_path):
    root, _ = trained
    (tmp_path / "empty").mkdir()
    registry = tmp_path / "reg"
    jobs = parse_jobs({"registry": str(registry), "jobs": [
        _job("missing", str(tmp_path / "nowhere")), _job("empty", str(tmp_path / "empty")),
        _job("fine", str(root / "pb"))]}, source="jobs.yaml")
    with pytest.raises(PreflightError) as info:
        run_export(jobs, ["--work_dir", str(tmp_path / "work")])
    assert info.value.problems == [
        f"preflight: job 'missing': field 'saved_model': {tmp_path / 'nowhere'}: no such directory",
        f"preflight: job 'empty': field 'saved_model': {tmp_path / 'empty'}: no saved_model.cpb or "
        "saved_model.pb there: not a SavedModel directory"]
    assert not (registry / "fine").exists()
