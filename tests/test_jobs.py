"""Jobs file schema: what is accepted, and that every error names file, job and field."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tf_bigexport.pipeline.jobs import (DEFAULT_SPLIT_THRESHOLD, JobsFileError, load_jobs_file, parse_jobs,
                           resolve_sample_inputs)

GOOD_JOB = {
    "name": "resnet",
    "factory": "tf_bigexport.pipeline.demo_models:mobilenet_classifier",
    "signatures": {"serving_default": [{"name": "images", "dtype": "float32", "shape": [None, 96, 96, 3]}]},
}


def job(**changes):
    spec = json.loads(json.dumps(GOOD_JOB))
    spec.update(changes)
    return spec


def errors_of(document, **kwargs) -> list[str]:
    with pytest.raises(JobsFileError) as info:
        parse_jobs(document, source="jobs.yaml", **kwargs)
    return info.value.problems


def test_minimal_job_gets_defaults():
    [spec] = parse_jobs({"registry": "gs://b/models", "jobs": [job()]}, source="jobs.yaml")
    assert spec.name == "resnet"
    assert spec.registry == "gs://b/models"
    assert spec.version == "next"
    assert spec.split_threshold == DEFAULT_SPLIT_THRESHOLD < 2**31
    assert spec.signatures[0].method == "__call__"
    assert spec.signatures[0].inputs[0].shape == (None, 96, 96, 3)


def test_misspelled_dtype_names_job_and_field():
    bad = job(signatures={"serving_default": [{"name": "images", "dtype": "flaot32", "shape": [None, 3]}]})
    [line] = errors_of({"registry": "r", "jobs": [bad]})
    assert line.startswith("jobs.yaml: job 'resnet' field 'signatures.serving_default[0].dtype': "
                           "unknown dtype 'flaot32'")
    assert "float32" in line  # the suggestion


def test_unknown_fields_rejected_at_every_level():
    bad = job(max_shard=5, signatures={"serving_default": {"method": "__call__", "inputs": [
        {"name": "x", "dtype": "float32", "shape": [1], "layout": "nhwc"}], "extra": 1}})
    lines = errors_of({"registry": "r", "jobs": [bad], "defaults": {}})
    assert any("field 'defaults': unknown field" in line for line in lines)
    assert any("job 'resnet' field 'max_shard': unknown field (did you mean 'max_shard_size'?)" in line
               for line in lines)
    assert any("field 'signatures.serving_default.extra': unknown field" in line for line in lines)
    assert any("field 'signatures.serving_default.inputs[0].layout': unknown field" in line for line in lines)


def test_every_problem_reported_at_once():
    lines = errors_of({"jobs": [job(version="latest", split_threshold=3 * 2**30),
                                job(name="other", factory="no_colon_here")]})
    joined = "\n".join(lines)
    assert "job 'resnet' field 'version': must be 'next', 'timestamp' or an integer" in joined
    assert "job 'resnet' field 'split_threshold': 3221225472 is too large" in joined
    assert "job 'other' field 'factory': 'no_colon_here' is not of the form" in joined
    assert "job 'resnet' field 'registry': no registry" in joined


def test_registry_from_cli_default_and_duplicates():
    lines = errors_of({"jobs": [job(), job()]}, default_registry="/tmp/reg")
    assert lines == ["jobs.yaml: job 'resnet' field 'name': duplicate model name (also job #0)"]


def test_bad_shapes_names_and_signature_references():
    bad = job(signatures={"serving_default": [{"name": "1x", "dtype": "float32", "shape": [-1]}]},
              sample_inputs={"serve": {"generate": {"seed": 0}}})
    joined = "\n".join(errors_of({"registry": "r", "jobs": [bad]}))
    assert "field 'signatures.serving_default[0].name': must be an identifier" in joined
    assert "field 'signatures.serving_default[0].shape': must be a list of sizes >= 0 or null" in joined
    assert "field 'sample_inputs.serve': no such signature" in joined


def test_yaml_file_with_relative_sample_paths(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.savez(tmp_path / "both.npz", x=np.ones((1, 3), np.float32))
    (tmp_path / "jobs.yaml").write_text(
        "registry: gs://bucket/models\n"
        "jobs:\n"
        "  - name: m\n"
        "    factory: tf_bigexport.pipeline.demo_models:split_constants\n"
        "    signatures:\n"
        "      serving_default: [{name: x, dtype: float32, shape: [null, 3]}]\n"
        "      other: {method: other, inputs: [{name: x, dtype: float32, shape: [null, 3]}]}\n"
        "      third: [{name: x, dtype: int64, shape: [2]}]\n"
        "    sample_inputs:\n"
        "      serving_default: {x: x.npy}\n"
        "      other: both.npz\n"
        "      third: {x: [4, 5]}\n"
        "    version: 7\n"
        "    tags: {team: vision}\n")
    [spec] = load_jobs_file(tmp_path / "jobs.yaml")
    assert spec.version == "7" and spec.tags == {"team": "vision"}
    assert resolve_sample_inputs(spec, "serving_default")["x"].shape == (2, 3)
    assert resolve_sample_inputs(spec, "other")["x"].tolist() == [[1.0, 1.0, 1.0]]
    third = resolve_sample_inputs(spec, "third")["x"]
    assert third.dtype == np.int64 and third.tolist() == [4, 5]


def test_sample_inputs_that_do_not_fit_name_the_field(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    [spec] = parse_jobs({"registry": "r", "jobs": [job(
        signatures={"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 3]}]},
        sample_inputs={"serving_default": {"x": "x.npy"}})]}, source="jobs.yaml", base_dir=str(tmp_path))
    with pytest.raises(JobsFileError) as info:
        resolve_sample_inputs(spec, "serving_default")
    assert "job 'resnet' field 'sample_inputs.serving_default.x': shape [2, 4] does not fit declared [None, 3]" \
        in str(info.value)


def test_generated_samples_are_seeded_and_typed():
    [spec] = parse_jobs({"registry": "r", "jobs": [job(
        signatures={"serving_default": [{"name": "tokens", "dtype": "string", "shape": [None, None]},
                                        {"name": "ids", "dtype": "int32", "shape": [None]}]},
        sample_inputs={"serving_default": {"generate": {"seed": 5, "batch": 3}}})]})
    first = resolve_sample_inputs(spec, "serving_default")
    again = resolve_sample_inputs(spec, "serving_default")
    assert first["tokens"].shape == (3, 4) and isinstance(first["tokens"][0, 0], bytes)
    assert first["ids"].dtype == np.int32 and first["ids"].shape == (3,)
    assert (first["tokens"] == again["tokens"]).all() and (first["ids"] == again["ids"]).all()


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(JobsFileError, match="cannot read jobs file"):
        load_jobs_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(JobsFileError, match=r"bad.json: not valid JSON"):
        load_jobs_file(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- name: x\n")
    with pytest.raises(JobsFileError, match="top level must be a mapping"):
        load_jobs_file(tmp_path / "list.yaml")


def test_spec_hash_follows_content():
    [a] = parse_jobs({"registry": "r", "jobs": [job()]})
    [b] = parse_jobs({"registry": "r", "jobs": [job(version=3)]})
    [c] = parse_jobs({"registry": "r", "jobs": [job()]})
    assert a.spec_sha256 == c.spec_sha256 != b.spec_sha256


def test_documented_example_is_valid():
    example = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "jobs.yaml")
    jobs = load_jobs_file(example, default_registry="/tmp/registry")
    assert [j.name for j in jobs] == ["mobilenet", "vocab", "split"]
    assert jobs[2].split_threshold == 1 << 20 and jobs[1].signature("score").method == "score"
    for job in jobs:
        for key in job.sample_inputs:
            assert resolve_sample_inputs(job, key)
