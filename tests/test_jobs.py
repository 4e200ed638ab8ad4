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


def test_sample_inputs_that_do_not_fit_are_found_in_validation(tmp_path):
    """Read and checked when the file is validated (exit 2 before any work), not in the read stage."""
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    lines = errors_of({"registry": "r", "jobs": [job(
        signatures={"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 3]}]},
        sample_inputs={"serving_default": {"x": "x.npy"}})]}, base_dir=str(tmp_path))
    assert lines == ["jobs.yaml: job 'resnet' field 'sample_inputs.serving_default.x': shape [2, 4] does not fit "
                     "declared [None, 3]"]
    missing = errors_of({"registry": "r", "jobs": [job(sample_inputs={"serving_default": "none.npz"})]},
                        base_dir=str(tmp_path))
    assert len(missing) == 1 and "field 'sample_inputs.serving_default': cannot read" in missing[0]


def test_sample_inputs_are_bounded(tmp_path):
    huge = job(sample_inputs={"serving_default": {"generate": {"seed": 0, "batch": 10**6}}})
    [line] = errors_of({"registry": "r", "jobs": [huge]})
    assert "field 'sample_inputs.serving_default.images': generated samples would be more than 64 MiB" in line
    # a compressed .npz that would inflate past the limit is refused before it is decompressed
    np.savez_compressed(tmp_path / "zeros.npz", images=np.zeros((700, 96, 96, 3), np.float32))
    assert os.path.getsize(tmp_path / "zeros.npz") < 1 << 20
    [line] = errors_of({"registry": "r", "jobs": [job(sample_inputs={"serving_default": "zeros.npz"})]},
                       base_dir=str(tmp_path))
    assert "zeros.npz: more than 64 MiB of sample inputs" in line
    os.mkfifo(tmp_path / "pipe.npy")  # would block a reader forever
    [line] = errors_of({"registry": "r", "jobs": [job(sample_inputs={"serving_default": {"images": "pipe.npy"}})]},
                       base_dir=str(tmp_path))
    assert "pipe.npy is not a regular file" in line


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


# ---- hostile jobs files: exit 2 with `file: reason`, before any work ---------------------

JOB_TEXT = ("jobs:\n  - name: {name}\n    factory: a.b:c\n    version: {version}\n"
            "    signatures: {{s: [{{name: x, dtype: float32, shape: [2]}}]}}\n")
LAUGHS = "".join(f"    l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]\n"
                 for i in range(1, 12))
HOSTILE = {
    "not-utf8.yaml": (b"jobs:\n  - name: caf\xe9\n", "not UTF-8 text: byte 0xe9 at offset 19 (line 2)"),
    "deep.yaml": (b"jobs: " + b"[" * 20000 + b"]" * 20000 + b"\n", "nested more than 32 levels deep"),
    "deep.json": (b'{"jobs": ' + b"[" * 20000 + b"]" * 20000 + b"}", "nested 20001 levels deep; at most 32"),
    "digits.yaml": (JOB_TEXT.format(name="m", version="9" * 5000).encode(), "integer 999999999999... has 5000"),
    "digits.json": (b'{"jobs": [], "registry": ' + b"7" * 5000 + b"}", "integer 777777777777... has 5000"),
    "laughs.yaml": (("jobs:\n  - name: m\n    factory: a.b:c\n    factory_kwargs:\n      l0: &l0 [x]\n" + LAUGHS)
                    .encode(), "YAML anchor &l0 is not allowed"),
    "alias-samples.yaml": (JOB_TEXT.format(name="m", version=1).encode()
                           + b"    sample_inputs: {s: {x: *v}}\n", "YAML alias *v is not allowed"),
    "duplicate.yaml": (JOB_TEXT.format(name="m", version=1).encode() + b"    version: 2\n",
                       "line 6, column 5: key 'version' appears twice in one mapping (first on line 4)"),
    "duplicate.json": (b'{"registry": "a", "registry": "b", "jobs": []}', "key 'registry' appears twice"),
    "large.yaml": (b"jobs: []\n" + b"# padding\n" * 500_000, "larger than 4 MiB"),
    "dotdot.yaml": (JOB_TEXT.format(name="a..b", version=1).encode(), "field 'name': use 1-128 of"),
    "long.yaml": (JOB_TEXT.format(name="m" * 200, version=1).encode(), "field 'name': use 1-128 of"),
    "newline.yaml": (JOB_TEXT.format(name='"m\\n"', version=1).encode(), "field 'name': use 1-128 of"),
    "pow.yaml": (JOB_TEXT.format(name="m", version="2**70").encode(), "field 'version': must be 'next'"),
    "big-version.yaml": (JOB_TEXT.format(name="m", version=2**70).encode(), "integer 1180591620717411303424 is out"),
    "fullwidth.yaml": (JOB_TEXT.format(name="m", version='"１２"').encode(), "got '１２'"),
    "arabic.yaml": (JOB_TEXT.format(name="m", version='"٣"').encode(), "got '٣'"),
    "signature-newline.yaml": (b'jobs: [{name: m, factory: a.b:c, signatures: {"s\\n": []}}]\n',
                               "field 'signatures.s\\n': signature keys must be"),
    "factory-newline.yaml": (b'jobs: [{name: m, factory: "a.b:c\\n", signatures: {s: []}}]\n',
                             "is not of the form 'package.module:function'"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_jobs_files_exit_2_naming_file_and_reason(tmp_path, capsys, name):
    from tf_bigexport.pipeline import cli
    data, message = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    registry = tmp_path / "registry"
    assert cli.main(["run", "--jobs", str(path), "--registry", str(registry)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: ") and message in err, err
    assert "Traceback" not in err and len(err) < 2000
    assert not registry.exists()


def test_the_demo_vocabulary_factory_leaves_no_temp_dir(tmp_path):
    import gc
    import subprocess
    import sys

    from tf_bigexport.pipeline.demo_models import vocabulary_module
    model = vocabulary_module()
    vocab_dir = os.path.dirname(model.vocab.asset_path.numpy().decode())
    assert os.path.basename(vocab_dir).startswith("tf-bigexport-vocab-") and os.path.isdir(vocab_dir)
    del model
    gc.collect()
    assert not os.path.exists(vocab_dir)
    # and a process that never lets go of its model (the export's own) removes it when it exits
    out = subprocess.run([sys.executable, "-c", "import os; from tf_bigexport.pipeline.demo_models import "
                          "vocabulary_module as v; m = v(); print(os.path.dirname(m.vocab.asset_path.numpy().decode()))"],
                         capture_output=True, text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    left = out.stdout.strip().splitlines()[-1]
    assert os.path.basename(left).startswith("tf-bigexport-vocab-") and not os.path.exists(left)
