"""Hostile and broken input to the pipeline and the storage layer: every case fails with
a message naming the job and field (or file), and nothing is published.

test_jobs.py covers the schema's unknown fields, misspelled dtypes and sample
files; this module adds wrong types, bad registries, factories and signatures
that fail at run time, and export directories or buckets that try to make us
read or write outside where we should.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from hostile_testkit import TESTS, report, tiny_job, write_jobs
from tf_bigexport.pipeline import cli
from tf_bigexport.storage import Registry, StorageError, VersionPolicy, build_manifest
from storage_testkit import make_export, read_tree

# ---- jobs files: rejected before anything runs ------------------------------------------

WRONG_TYPES = [
    ("name", 5, "job '#0' field 'name': required"),
    ("factory", ["hostile_models:tiny_dense"], "field 'factory': required"),
    ("factory_kwargs", [1, 2], "field 'factory_kwargs': must be a mapping"),
    ("signatures", [{"name": "x", "dtype": "float32", "shape": [4]}], "field 'signatures': required: a mapping"),
    ("sample_inputs", "x.npy", "field 'sample_inputs': must map signature keys"),
    ("split_threshold", "1GB", "field 'split_threshold': must be a positive integer"),
    ("max_shard_size", True, "field 'max_shard_size': must be a positive integer"),
    ("version", 1.5, "field 'version': must be 'next', 'timestamp' or an integer"),
    ("registry", 7, "field 'registry': must be a non-empty string"),
    ("tags", ["a"], "field 'tags': must be a mapping of strings"),
    ("checkpoint", 3, "field 'checkpoint': must be a checkpoint path prefix"),
    ("registry", "ftpx://host/models", "field 'registry': unsupported URI scheme 'ftpx' (did you mean 'ftp'?)"),
]


@pytest.mark.parametrize("field, value, message", WRONG_TYPES, ids=[f"{f}={v!r}" for f, v, _ in WRONG_TYPES])
def test_wrong_types_exit_2_naming_job_and_field(tmp_path, capsys, field, value, message):
    registry = tmp_path / "reg"
    job = tiny_job("m")
    job[field] = value
    jobs = write_jobs(tmp_path / "jobs.json", [job], registry=str(registry))
    assert cli.main(["run", "--jobs", str(jobs)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "jobs.json: job " in err and message in err, err
    assert not registry.exists() and not (tmp_path / "work").exists()


def test_sample_inputs_that_do_not_fit_exit_2_before_any_work(tmp_path, capsys):
    registry = tmp_path / "reg"
    jobs = write_jobs(tmp_path / "jobs.json", [tiny_job("good"), tiny_job(
        "sample-shape", sample_inputs={"serving_default": {"x": [[1.0, 2.0]]}})], registry=str(registry))
    assert cli.main(["run", "--jobs", str(jobs), "--work_dir", str(tmp_path / "work")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert ("jobs.json: job 'sample-shape' field 'sample_inputs.serving_default.x': shape [1, 2] does not fit "
            "declared [None, 4]") in err
    assert not registry.exists() and not (tmp_path / "work").exists()


def test_document_level_wrong_types(tmp_path, capsys):
    for text, message in [('{"jobs": {"name": "m"}}', "field 'jobs': must be a non-empty list of jobs, got dict"),
                          ('{"jobs": [], "registry": "/r"}', "field 'jobs': must be a non-empty list"),
                          ('{"jobs": ["m"]}', "job '#0': a job must be a mapping, got str"),
                          ('{"registry": ["a"], "jobs": []}', "field 'registry': must be a non-empty string")]:
        (tmp_path / "jobs.json").write_text(text)
        assert cli.main(["run", "--jobs", str(tmp_path / "jobs.json"), "--registry", "/unused"]) == cli.EXIT_USAGE
        assert message in capsys.readouterr().err, text


# ---- jobs that fail while running: reported by name and stage, nothing published ---------

@contextlib.contextmanager
def read_only_directory(path: Path):
    """A directory we may not write into: mode 0555, or for root (who ignores modes) a read-only tmpfs."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_failing_jobs_name_job_and_field_and_publish_nothing(tmp_path):
    from tf_bigexport.pipeline.export import run_export
    from tf_bigexport.pipeline.jobs import parse_jobs

    registry = tmp_path / "reg"
    x_int = {"serving_default": [{"name": "x", "dtype": "int32", "shape": [None, 4]}]}
    x_wide = {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 5]}]}
    expected = {
        "dtype": ("trace", "field 'signatures.serving_default': the model's __call__ does not accept the declared "
                           "inputs (x: int32[None, 4])", "MatMul"),
        "shape": ("trace", "field 'signatures.serving_default'", "Dimensions must be equal"),
        "raises": ("trace", "field 'factory': 'hostile_models:raises_while_building' raised RuntimeError: "
                            "checkpoint shards are missing", ""),
        "returns-none": ("trace", "factory 'hostile_models:returns_nothing' returned NoneType", ""),
    }
    jobs = [
        tiny_job("good"),
        tiny_job("dtype", signatures=x_int, sample_inputs={}),
        tiny_job("shape", signatures=x_wide, sample_inputs={}),
        tiny_job("raises", factory="hostile_models:raises_while_building", factory_kwargs={}),
        tiny_job("returns-none", factory="hostile_models:returns_nothing", factory_kwargs={}),
    ]
    specs = parse_jobs({"registry": str(registry), "jobs": jobs}, source="jobs.yaml")
    outcomes = {o["model_name"]: o for o in run_export(specs, [
        "--work_dir", str(tmp_path / "work"), "--python_path", str(TESTS)])}

    assert outcomes["good"]["status"] == "published", outcomes["good"]
    for name, (stage, message, detail) in expected.items():
        outcome = outcomes[name]
        assert (outcome["status"], outcome["stage"]) == ("failed", stage), outcome
        assert message in outcome["error"] and detail in outcome["error"], outcome["error"]
        assert "in user code" not in outcome["error"] or detail in outcome["error"]
    # only the good job left anything in the registry, and no staging remains
    assert sorted(p.name for p in registry.iterdir()) == [".staging", "good"]
    assert list((registry / ".staging").iterdir()) == []
    assert Registry(str(registry)).verify_version("good", 1) == []
    report("bad_jobs", {"jobs_rejected": len(expected) + 3, "published_by_rejected_jobs": 0,
                        "schema_cases": len(WRONG_TYPES) + 5})


def test_preflight_refuses_jobs_that_cannot_publish_before_any_work(tmp_path, s3_emulator, capsys):
    """An unreachable or read-only registry and a factory that is nowhere: exit 2, nothing built or written."""
    from emulators import free_port, s3_storage_options

    registry = tmp_path / "reg"
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with read_only_directory(tmp_path / "read-only") as read_only:
        jobs = write_jobs(tmp_path / "jobs.json", [
            tiny_job("good"),
            tiny_job("no-import", factory="hostile_models_missing:build", factory_kwargs={}),
            # one registry the endpoint never answers for, one we may not write to
            tiny_job("unreachable", registry="s3://registry/unreachable"),
            tiny_job("read-only", registry=str(read_only / "reg")),
        ], registry=str(registry))
        code = cli.main(["run", "--jobs", str(jobs), "--work_dir", str(tmp_path / "work"),
                         "--python_path", str(TESTS), "--storage_options", json.dumps(s3_storage_options(closed))])
        assert os.listdir(read_only) == []
    assert code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("preflight:")]
    assert len(lines) == 3, err
    assert "preflight: job 'no-import': field 'factory': factory 'hostile_models_missing:build': no module named " \
           f"'hostile_models_missing' (looked in {tmp_path}, {TESTS}, the installed packages, " in err
    assert "preflight: job 'unreachable': registry s3://registry/unreachable: not reachable or not writable" in err
    assert "Could not connect to the endpoint URL" in err
    read_only_error = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert f"preflight: job 'read-only': registry {read_only}/reg: not reachable or not writable" in err
    assert read_only_error in err
    assert not registry.exists() and not (tmp_path / "work").exists()  # not even the good job started


# ---- export directories: never follow links out, never upload what is outside ---------

@pytest.mark.parametrize("link_target, message", [
    ("/etc/passwd", "points outside the export directory"),
    ("../../outside.txt", "points outside the export directory"),
    ("../missing.txt", "not a regular file"),
    ("/etc", "points outside the export directory"),
    (".", "symbolic link to a directory"),
])
def test_links_out_of_the_export_are_refused_and_nothing_is_staged(tmp_path, link_target, message):
    export = make_export(tmp_path / "export")
    (tmp_path / "outside.txt").write_text("private\n")
    (export / "assets" / "link").symlink_to(link_target)
    with pytest.raises(StorageError, match=message) as caught:
        build_manifest(str(export))
    assert "assets/link" in str(caught.value)
    registry = Registry(str(tmp_path / "reg"))
    with pytest.raises(StorageError, match=message):
        registry.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-link")
    assert read_tree(registry.filesystem, str(tmp_path / "reg")) == {}


def test_link_inside_the_export_is_uploaded_as_the_file_it_names(tmp_path):
    export = make_export(tmp_path / "export")
    (export / "assets" / "alias.txt").symlink_to("vocab.txt")
    manifest = build_manifest(str(export)).by_path()
    assert manifest["assets/alias.txt"].sha256 == manifest["assets/vocab.txt"].sha256


def test_records_naming_files_outside_their_directory_are_refused(tmp_path):
    registry = Registry(str(tmp_path / "reg"))
    export = make_export(tmp_path / "export")
    registry.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-1")
    path = tmp_path / "reg" / "m" / ".releases" / "1.json"
    record = json.loads(path.read_text())
    record["files"][0]["path"] = "../../../../etc/passwd"
    path.write_text(json.dumps(record))
    with pytest.raises(StorageError, match=r"object path '../../../../etc/passwd' has an empty, '.' or '..'"):
        registry.verify_version("m", 1)


def test_object_names_with_dot_dot_in_a_bucket_are_never_downloaded(s3_emulator, tmp_path, monkeypatch, capsys):
    """Object stores allow keys like m/1/../../x; the CLI must not write them outside its scratch dir."""
    from tf_bigexport.pipeline.locations import local_model_dir

    fs = s3_emulator.filesystem()
    escape = tmp_path / "escaped.txt"
    hostile = f"{s3_emulator.bucket}/hostile/m/1/" + "../" * (len(escape.parts) + 8) + str(escape).lstrip("/")
    fs.pipe_file(f"{s3_emulator.bucket}/hostile/m/1/saved_model.pb", b"\x00")
    fs.pipe_file(hostile, b"planted")
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(s3_emulator.storage_options))
    uri = s3_emulator.uri("hostile/m/1")
    with pytest.raises(ValueError, match=r"object path '(\.\./)+.*escaped.txt' has an empty, '.' or '..' segment"):
        with local_model_dir(uri):
            pass
    assert cli.main(["inspect", uri]) == cli.EXIT_FAILED
    assert "has an empty, '.' or '..' segment" in capsys.readouterr().err
    assert cli.main(["call", uri, "--input-exprs", "x=[1.0]"]) != cli.EXIT_OK
    assert not escape.exists()
