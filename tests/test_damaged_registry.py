"""A damaged registry does not stop publishing (issue 13.7): the damaged object is named in a
warning and skipped, or rebuilt from the release records; what was published is reported as
published; a rerun of the same job adds no second version."""
from __future__ import annotations

import json
import logging
import os

import pytest

from hostile_testkit import report
from tf_bigexport.storage import VersionPolicy
from tf_bigexport.storage.release_state import DAMAGED, PUBLISHED
from storage_testkit import make_export

INFO = {"fingerprint": {"saved_model_checksum": "7"}, "tensorflow_version": "2.21.0"}


def _damage(fs, root, kind, record_of_1: dict) -> tuple[str, int]:
    """Writes the damage; returns (the damaged object's name, the version the next publish gets)."""
    if kind == "truncated record":
        fs.pipe_file(f"{root}/m/.releases/7.json", json.dumps(record_of_1).encode()[:57])
        return "m/.releases/7.json", 2
    if kind == "record with version 'seven'":
        fs.pipe_file(f"{root}/m/.releases/7.json", json.dumps({**record_of_1, "version": "seven"}).encode())
        return "m/.releases/7.json", 2
    if kind == "garbage index":
        fs.pipe_file(f"{root}/m/index.json", b"\x00\x9c not json {")
        return "m/index.json", 2
    fs.pipe_file(f"{root}/m/.claims/7.json", b"[]")  # "claim holding []": version 7 stays taken
    return "m/.claims/7.json", 8


@pytest.mark.parametrize("kind", ["truncated record", "record with version 'seven'", "garbage index",
                                  "claim holding []"])
def test_publishing_goes_on_in_a_damaged_registry(registry_target, tmp_path, caplog, kind):
    reg = registry_target.registry()
    first = reg.publish(str(make_export(tmp_path / "a", seed=1)), "m", VersionPolicy.next_integer(), INFO, "job-1")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    fs.makedirs(f"{root}/m/.claims", exist_ok=True)
    fs.makedirs(f"{root}/m/.releases", exist_ok=True)
    damaged, expected = _damage(fs, root, kind, first.to_dict())
    fs.invalidate_cache()

    export = make_export(tmp_path / "b", seed=2)
    with caplog.at_level(logging.WARNING, logger="storage"):
        record = reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-2")
    assert record.version == expected
    assert f"{registry_target.uri}/{damaged}" in caplog.text  # the damaged object, by name
    assert reg.release_state("m", expected).state == PUBLISHED and reg.verify_version("m", expected) == []
    assert [row["version"] for row in reg.read_index("m")["versions"]] == [1, expected]
    # a retry of the same job is the same version, not a duplicate
    assert reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-2") == record
    assert sorted(reg.list_versions("m")) == sorted({1, expected} | ({7} if "record" in kind else set()))
    if kind != "garbage index":
        assert reg.release_state("m", 7).state == DAMAGED
    report(f"damaged_{kind.split()[0]}_{kind.split()[-1].strip('[]') or 'list'}_{registry_target.kind}",
           {"kind": kind, "backend": registry_target.kind, "publishes": 1, "retries": 1, "published": 1,
            "duplicates": 0, "warned": True})


def test_a_damaged_explicit_version_is_refused_naming_the_object(registry_target, tmp_path):
    reg = registry_target.registry()
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    fs.makedirs(f"{root}/m/.claims", exist_ok=True)
    fs.pipe_file(f"{root}/m/.claims/7.json", b"[]")
    fs.invalidate_cache()
    from tf_bigexport.storage import VersionConflictError
    with pytest.raises(VersionConflictError, match=r"version 7 of model 'm'.*\.claims/7\.json.*damaged"):
        reg.publish(str(make_export(tmp_path / "a")), "m", VersionPolicy.explicit(7), INFO, "job-1")


def test_the_pipeline_reports_a_version_it_published_into_a_damaged_registry_as_published(tmp_path):
    """It used to write the version, then fail 'in commit' on the damaged record; a retry then made a duplicate."""
    from hostile_testkit import tiny_job
    from tf_bigexport.pipeline.direct import export_directly
    from tf_bigexport.pipeline.jobs import parse_jobs
    registry = tmp_path / "reg"
    (registry / "tiny" / ".releases").mkdir(parents=True)
    (registry / "tiny" / ".releases" / "7.json").write_bytes(b'{"schema": "tf-bigexport.release/1", "vers')
    (registry / "tiny" / "index.json").write_bytes(b"garbage")
    [job] = parse_jobs({"registry": str(registry), "jobs": [tiny_job("tiny")]}, source="jobs.json",
                       base_dir=os.path.dirname(os.path.abspath(__file__)))  # tests/hostile_models.py
    state = export_directly(job, work_root=str(tmp_path / "work"), run_id="r1")
    assert state.version == 1 and state.release_record["version"] == 1
    index = json.loads((registry / "tiny" / "index.json").read_text())
    assert [row["version"] for row in index["versions"]] == [1]
    assert export_directly(job, work_root=str(tmp_path / "work2"), run_id="r1").version == 1


@pytest.mark.parametrize("command", [["call", "--input-exprs", "x=[1.0]"], ["convert", "--to", "pb"]])
def test_commands_that_download_a_version_refuse_one_damaged_since_its_record(s3_emulator, tmp_path, monkeypatch,
                                                                              capsys, command):
    """`call` and `convert` load what they download: a changed object is named, nothing runs."""
    from tf_bigexport.pipeline import cli
    from tf_bigexport.storage import Registry
    reg = Registry(s3_emulator.uri("damaged-cli"), storage_options=dict(s3_emulator.storage_options))
    record = reg.publish(str(make_export(tmp_path / "a")), "m", VersionPolicy.next_integer(), INFO, "job-1")
    fs = s3_emulator.filesystem()
    victim = f"{reg.store.root}/m/{record.version}/variables/variables.index"
    fs.pipe_file(victim, bytes(1_000))  # same size, other bytes
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(s3_emulator.storage_options))
    name, *rest = command
    argv = [name, record.uri, *rest] + (["--output", str(tmp_path / "out")] if name == "convert" else [])
    assert cli.main(argv) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{record.uri} (against its release record): 1 file(s) do not match" in err
    assert "variables/variables.index: crc32c" in err
    assert not (tmp_path / "out").exists()


def test_call_names_a_file_missing_from_a_local_version(tmp_path, capsys):
    """A local version loads in place, after a stat per file its record lists."""
    from tf_bigexport.pipeline import cli
    from tf_bigexport.storage import Registry
    record = Registry(str(tmp_path / "registry")).publish(str(make_export(tmp_path / "a")), "m",
                                                         VersionPolicy.next_integer(), INFO, "job-1")
    os.remove(tmp_path / "registry" / "m" / str(record.version) / "variables" / "variables.index")
    assert cli.main(["call", record.uri, "--input-exprs", "x=[1.0]"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{record.uri} (against its release record): 1 file(s) do not match" in err
    assert "variables/variables.index: missing" in err


def test_mismatches_say_what_was_expected_in_words():
    from tf_bigexport.storage import Mismatch
    assert str(Mismatch("a/b", "missing", 145, None)) == "a/b: missing (expected 145 bytes)"
    assert str(Mismatch("x", "unexpected", None, 7)) == "x: unexpected (7 bytes, not listed)"
    assert str(Mismatch("y", "not in manifest", None, None)) == "y: not in manifest"
    assert str(Mismatch("z", "size", 3, 2)) == "z: size (expected 3, got 2)"
