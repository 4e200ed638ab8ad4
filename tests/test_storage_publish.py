"""Publishing end to end, against a local directory, the GCS emulator and moto's S3."""

from __future__ import annotations

import json

import pytest

from tf_bigexport.storage import (Registry, ReleaseRecord, StorageError, VersionConflictError, VersionPolicy,
                     build_manifest)
from storage_testkit import flip_byte, make_export, read_tree, version_dirs

INFO = {"fingerprint": {"saved_model_checksum": 123}, "signatures": ["serving_default"],
        "tensorflow_version": "2.21.0", "job_spec_sha256": "ab" * 32, "owner": "team-x"}


@pytest.fixture
def export(tmp_path):
    return make_export(tmp_path / "export")


def test_publish_layout_record_and_index(registry_target, export):
    reg = registry_target.registry()
    record = reg.publish(str(export), "resnet", VersionPolicy.next_integer(), INFO, "job-a")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")

    assert record.version == 1
    assert record.uri == f"{registry_target.uri}/resnet/1"
    expected = {p.relative_to(export).as_posix(): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert read_tree(fs, f"{root}/resnet/1") == expected
    # Nothing but the SavedModel inside the version dir; bookkeeping lives beside it.
    assert version_dirs(fs, f"{root}/resnet") == [1]
    assert read_tree(fs, f"{root}/.staging") == {}

    stored = ReleaseRecord.from_json(fs.cat_file(f"{root}/resnet/.releases/1.json"))
    assert stored == record == reg.read_release_record("resnet", 1)
    assert stored.fingerprint == INFO["fingerprint"] and stored.tensorflow_version == "2.21.0"
    assert stored.extra == {"owner": "team-x"}
    assert [f.path for f in stored.files] == sorted(expected)
    assert {f.path: f for f in stored.files} == build_manifest(str(export)).by_path()

    index = json.loads(fs.cat_file(f"{root}/resnet/index.json"))
    assert index["latest"] == 1 and [v["version"] for v in index["versions"]] == [1]
    assert reg.list_versions("resnet") == [1]
    assert reg.verify_version("resnet", 1) == []


def test_next_integer_explicit_and_timestamp(registry_target, tmp_path, export):
    reg = registry_target.registry()
    other = make_export(tmp_path / "other", seed=1)
    assert reg.publish(str(export), "m", VersionPolicy.explicit(5), {}, "job-5").version == 5
    assert reg.publish(str(other), "m", VersionPolicy.next_integer(), {}, "job-6").version == 6
    with pytest.raises(VersionConflictError, match=r"version 5 of model 'm'"):
        reg.publish(str(other), "m", VersionPolicy.explicit(5), {}, "job-other")
    stamped = reg.publish(str(other), "m", VersionPolicy.timestamp(), {}, "job-ts").version
    assert stamped > 1_700_000_000
    assert reg.list_versions("m") == [5, 6, stamped]
    index = reg.read_index("m")
    assert index["latest"] == stamped and [v["version"] for v in index["versions"]] == [5, 6, stamped]
    # the loser of version 5 left nothing behind in version 5
    assert reg.verify_version("m", 5) == []


def test_rerun_of_same_job_returns_same_version_without_rewriting(registry_target, export, tmp_path):
    reg = registry_target.registry()
    first = reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    before = read_tree(fs, f"{root}/m")
    again = reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    assert again == first
    assert read_tree(fs, f"{root}/m") == before
    changed = make_export(tmp_path / "changed", seed=9)
    with pytest.raises(StorageError, match="job 'job-a' already published this version with different files"):
        reg.publish(str(changed), "m", VersionPolicy.next_integer(), INFO, "job-a")


def test_stage_is_idempotent_and_verify_staged_finds_damage(registry_target, export):
    reg = registry_target.registry()
    publication = reg.publication("m", "job-s", build_manifest(str(export)))
    staging = publication.stage(str(export))
    assert staging == publication.staging_uri == f"{registry_target.uri}/.staging/job-s"
    assert publication.verify() == []

    fs = registry_target.filesystem()
    damaged = fs._strip_protocol(staging) + "/variables/variables.data-00000-of-00002"
    flip_byte(fs, damaged)
    found = publication.verify()
    assert {m.path for m in found} == {"variables/variables.data-00000-of-00002"}
    assert "crc32c" in {m.reason for m in found}  # (backends without a native crc32c: sha256 too)
    fs.rm(fs._strip_protocol(staging) + "/assets/vocab.txt")
    found = publication.verify(paths=["assets/vocab.txt", "fingerprint.pb"])
    assert [(m.path, m.reason) for m in found] == [("assets/vocab.txt", "missing")]

    # Re-staging repairs exactly the damaged and missing objects.
    publication.stage(str(export))
    assert publication.verify() == []
    publication.clean()
    assert read_tree(fs, fs._strip_protocol(staging)) == {}


def test_flipped_byte_fails_verify_version_naming_the_file(registry_target, export):
    reg = registry_target.registry()
    reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-a")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    flip_byte(fs, f"{root}/m/1/variables/variables.index", offset=500)
    found = reg.verify_version("m", 1)
    assert {m.path for m in found} == {"variables/variables.index"}
    assert {m.reason for m in found} == {"crc32c", "sha256"}
    fs.pipe_file(f"{root}/m/1/stray.txt", b"x")
    fs.invalidate_cache()
    assert ("stray.txt", "unexpected") in {(m.path, m.reason) for m in reg.verify_version("m", 1)}


def test_marker_is_written_after_every_other_file(registry_target, export):
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    seen = {}

    def hook(step):
        if step in ("copied", "marker"):
            seen[step] = set(read_tree(fs, f"{root}/m/1"))

    reg = registry_target.registry(step_hook=hook)
    reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-a")
    everything = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()}
    assert seen["copied"] == everything - {"saved_model.pb"}  # and nothing half-written beside them
    assert seen["marker"] == everything


def test_commit_requires_the_claim(registry_target, export):
    reg = registry_target.registry()
    manifest = build_manifest(str(export))
    job_a, job_b = (reg.publication("m", job, manifest) for job in ("job-a", "job-b"))
    job_b.stage(str(export))
    assert job_a.claim(VersionPolicy.explicit(3)) == 3
    with pytest.raises(VersionConflictError, match=r"version 3 of model 'm'.*job 'job-b' does not hold"):
        job_b.commit(3, {})
    with pytest.raises(VersionConflictError, match=r"version 4 of model 'm'"):
        job_b.commit(4, {})
    # the same job re-claiming gets the same version, whatever the policy
    assert job_a.claim(VersionPolicy.next_integer()) == 3
    assert reg.list_versions("m") == []


def test_cpb_export_and_missing_marker(registry_target, tmp_path):
    reg = registry_target.registry()
    cpb = make_export(tmp_path / "cpb", marker="saved_model.cpb")
    record = reg.publish(str(cpb), "big", VersionPolicy.next_integer(), {}, "job-c")
    assert "saved_model.cpb" in {f.path for f in record.files}
    assert reg.verify_version("big", 1) == []
    headless = make_export(tmp_path / "headless")
    (headless / "saved_model.pb").unlink()
    with pytest.raises(StorageError, match="no saved_model.pb or saved_model.cpb"):
        reg.publish(str(headless), "big", VersionPolicy.next_integer(), {}, "job-d")
    assert reg.list_versions("big") == [1]


def test_bad_input_is_refused_with_a_clear_message(tmp_path, export):
    reg = Registry(str(tmp_path / "reg"))
    with pytest.raises(StorageError, match="model name '../etc' is invalid"):
        reg.publish(str(export), "../etc", VersionPolicy.next_integer(), {}, "job")
    with pytest.raises(StorageError, match="job key 'a/b' is invalid"):
        reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "a/b")
    with pytest.raises(StorageError, match="nowhere: not a directory"):
        reg.publish(str(tmp_path / "nowhere"), "m", VersionPolicy.next_integer(), {}, "job")
    with pytest.raises(StorageError, match="job key '../x' is invalid"):
        reg.publication("m", "../x", build_manifest(str(export)))
    with pytest.raises(StorageError, match="no release record"):
        reg.read_release_record("m", 1)
    (export / "bad name.txt").write_bytes(b"x")
    with pytest.raises(StorageError, match="'bad name.txt'.*has characters outside"):
        reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job")


def test_memory_filesystem(export):
    reg = Registry("memory://storage-test-registry")
    record = reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-mem")
    assert record.uri == "memory://storage-test-registry/m/1"
    assert reg.verify_version("m", 1) == []
    reg.filesystem.rm("/storage-test-registry", recursive=True)
