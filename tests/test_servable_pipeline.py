"""The jobs `format` field through `run`, and what every version says can load it.

One run publishes the same constants model in the default format (auto: the
servable form), in the image format, and a model whose program is large
because of constants inside a function body (auto falls back to the image
format). Each release record, index.json, `inspect` and the run summary then
say whether stock TensorFlow loads the version; the servable one is loaded
by stock TensorFlow (no tf_bigexport in the process) with the original
model's outputs, bitwise.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import storage
from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.graph import to_task
from tf_bigexport.pipeline.jobs import DEFAULT_FORMAT, JobsFileError, parse_jobs
from tf_bigexport.pipeline.summary import format_summary
from tf_bigexport.storage.record import ReleaseRecord
from tf_bigexport.transforms import trace as trace_stage
import servable_proof

SPLIT_KWARGS = {"count": 4, "size": 128, "seed": 7}  # 4 x 64 KiB captured constants
THRESHOLD = 48 * 1024  # below the model with its constants, above it without them


def body_constants():
    """A model whose function body holds its data (a numpy array used inside the tf.function)."""
    table = np.random.default_rng(5).standard_normal(32 * 1024).astype(np.float32)  # 128 KiB

    class BodyConstants(tf.Module):
        @tf.function
        def __call__(self, ids):
            return {"values": tf.gather(table, ids)}

    return BodyConstants()


def _job(name: str, **fields) -> dict:
    return {"name": name, "factory": "tf_bigexport.pipeline.demo_models:split_constants",
            "factory_kwargs": SPLIT_KWARGS,
            "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 128]}]},
            "sample_inputs": {"serving_default": {"generate": {"seed": 0, "batch": 2}}},
            "split_threshold": THRESHOLD, **fields}


def jobs_document(registry: str) -> dict:
    return {"registry": registry, "jobs": [
        _job("servable"),                   # format: auto (the default)
        _job("image", format="image"),
        {"name": "bodyconst", "factory": "test_servable_pipeline:body_constants",
         "signatures": {"serving_default": [{"name": "ids", "dtype": "int32", "shape": [None]}]},
         "sample_inputs": {"serving_default": {"ids": [0, 5, 32767]}},
         "split_threshold": THRESHOLD},     # auto, but only the image format can hold it here
    ]}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("servable-pipeline")
    registry = str(root / "registry")
    jobs = parse_jobs(jobs_document(registry), source="jobs.yaml",  # factories from the jobs file's dir
                      base_dir=os.path.dirname(os.path.abspath(__file__)))
    outcomes = run_export(jobs, ["--work_dir", str(root / "work")])
    return {"registry": registry, "root": root, "jobs": {job.name: job for job in jobs},
            "outcomes": {o["model_name"]: o for o in outcomes}}


def test_format_field_defaults_to_auto_and_rejects_unknown_values():
    (job,) = parse_jobs({"registry": "r", "jobs": [_job("m")]})
    assert job.format == DEFAULT_FORMAT == "auto"
    assert [parse_jobs({"registry": "r", "jobs": [_job("m", format=f)]})[0].format
            for f in ("auto", "servable", "image")] == ["auto", "servable", "image"]
    with pytest.raises(JobsFileError) as raised:
        parse_jobs({"registry": "r", "jobs": [_job("m", format="servabel")]}, source="jobs.yaml")
    assert str(raised.value) == ("jobs.yaml: job 'm' field 'format': must be one of auto, servable, image, "
                                 "got 'servabel' (did you mean 'servable'?)")


def test_auto_publishes_the_servable_form_and_image_stays_image(published):
    outcomes = published["outcomes"]
    assert {name: o["status"] for name, o in outcomes.items()} == dict.fromkeys(outcomes, "published")
    servable, image, body = outcomes["servable"], outcomes["image"], outcomes["bodyconst"]
    assert servable["proto_file"] == "saved_model.pb" and servable["loadable_by_stock_tensorflow"] is True
    assert servable["loading"]["form"] == "servable" and servable["loading"]["constants_in_checkpoint"] == 4
    assert servable["loading"]["program_bytes"] < THRESHOLD
    for other in (image, body):
        assert other["proto_file"] == "saved_model.cpb" and other["loadable_by_stock_tensorflow"] is False
        assert other["loading"]["form"] == "image" and other["loading"]["constants_in_checkpoint"] == 0
        assert other["loading"]["reason"].startswith("program proto ")
        assert other["loading"]["program_bytes"] > THRESHOLD


def test_records_and_index_say_what_loads_each_version(published):
    registry = storage.Registry(published["registry"])
    for name, stock in (("servable", True), ("image", False), ("bodyconst", False)):
        record = registry.read_release_record(name, 1)
        assert record.schema == "tf-bigexport.release/2"
        assert record.loadable_by_stock_tensorflow is stock
        assert record.loading == published["outcomes"][name]["loading"]
        assert record.converted_from is None
        data = json.loads(record.to_json())
        assert data["loadable_by_stock_tensorflow"] is stock and data["loading"]["reason"]
        [row] = registry.read_index(name)["versions"]
        assert row["loadable_by_stock_tensorflow"] is stock and row["loading"] == record.loading["reason"]


def test_summary_warns_about_versions_needing_the_image_format_loader(published):
    summary = format_summary(list(published["outcomes"].values()))
    assert "published (saved_model.pb, servable)" in summary
    warnings = [line for line in summary.splitlines() if line.startswith("warning:")]
    assert [w.split("'")[1] for w in warnings] == ["bodyconst", "image"]
    assert warnings[1].startswith("warning: job 'image' version 1 needs the image-format loader "
                                  "(stock TensorFlow, TF Serving and Vertex AI cannot load it): program proto ")


def test_inspect_shows_loadability(published, capsys):
    for name, answer in (("servable", "yes"), ("image", "no")):
        uri = f"{published['registry']}/{name}/1"
        assert cli.main(["inspect", uri, "--json"]) == cli.EXIT_OK
        desc = json.loads(capsys.readouterr().out)
        assert desc["loadable_by_stock_tensorflow"] is (answer == "yes")
        assert desc["loading"]["constants_in_checkpoint"] == (4 if answer == "yes" else 0)
        assert cli.main(["inspect", uri]) == cli.EXIT_OK
        assert f"loadable by stock TensorFlow: {answer} (" in capsys.readouterr().out


def test_stock_tensorflow_serves_the_published_servable_version_bitwise(published, cc_build, tmp_path):
    job = published["jobs"]["servable"]
    traced = trace_stage.trace_model(to_task(job, work_root=str(tmp_path), run_id="check"))
    inputs, expected = servable_proof.original_outputs(traced.model, traced.functions)
    version_dir = pathlib.Path(published["registry"]) / "servable" / "1"
    [actual] = servable_proof.run_stock_python([(version_dir, inputs)], tmp_path)
    servable_proof.assert_bitwise_equal(actual, expected, "published servable version (Python)")
    actual = servable_proof.run_cc_stock_loader(cc_build, version_dir, inputs, tmp_path)
    servable_proof.assert_bitwise_equal(actual, expected, "published servable version (C++ LoadSavedModel)")


def test_release_records_of_schema_1_still_read(tmp_path):
    record = {"schema": "tf-bigexport.release/1", "model_name": "m", "version": 1, "uri": "gs://b/m/1",
              "job_key": "m.run", "created": "", "committed": "", "extra": {},
              "files": [{"path": "saved_model.cpb", "size": 3, "crc32c": "AAAAAA==", "sha256": "00" * 32}]}
    old = ReleaseRecord.from_dict(record)
    assert old.schema == "tf-bigexport.release/1" and old.loadable_by_stock_tensorflow is False
    assert old.loading is None and old.converted_from is None
    as_pb = dict(record, files=[dict(record["files"][0], path="saved_model.pb")])
    assert ReleaseRecord.from_dict(as_pb).loadable_by_stock_tensorflow is True
    # An index built from a /1 record derives the flag too.
    releases = tmp_path / "registry" / "m" / ".releases"
    releases.mkdir(parents=True)
    (releases / "1.json").write_text(json.dumps(record))
    index = storage.Registry(str(tmp_path / "registry")).update_index("m")
    assert index["versions"][0]["loadable_by_stock_tensorflow"] is False
    assert index["versions"][0]["loading"] is None
