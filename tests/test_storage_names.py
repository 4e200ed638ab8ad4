"""Names, URIs, version policies, manifests and release records (no backend needed)."""

from __future__ import annotations

import base64
import hashlib
import json

import google_crc32c
import pytest

from tf_bigexport.storage import (InvalidNameError, Manifest, ReleaseRecord, StorageError, VersionPolicy,
                     build_manifest)
from tf_bigexport.storage.names import (validate_job_key, validate_model_name, validate_relative_path,
                                        validate_version)
from tf_bigexport.storage import local_path, open_store


@pytest.mark.parametrize("name", ["resnet", "bert-large_v2.1", "7"])
def test_good_model_names(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a/b", "/abs", ".hidden", "a..b", "x" * 129, "sp ace", "é"])
def test_bad_model_names(name):
    with pytest.raises(InvalidNameError, match="model name .* is invalid"):
        validate_model_name(name)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "a//b", "a/../b", "./a", "a/", "a\\b", "a/b c"])
def test_bad_object_paths(path):
    with pytest.raises(InvalidNameError, match="export-dir"):
        validate_relative_path(path, where="export-dir")


def test_job_keys_and_versions():
    assert validate_job_key("job-1.a=b") == "job-1.a=b"
    for bad in ("", "-x", "a/b", "a..b"):
        with pytest.raises(InvalidNameError, match="job key"):
            validate_job_key(bad)
    for bad in (0, -1, 2**63, True, "3"):
        with pytest.raises(InvalidNameError, match="version"):
            validate_version(bad)


def test_version_policies():
    assert VersionPolicy.parse("3") == VersionPolicy.explicit(3)
    assert VersionPolicy.parse("next") == VersionPolicy.next_integer()
    assert VersionPolicy.parse("timestamp") == VersionPolicy.timestamp()
    with pytest.raises(StorageError, match="version policy 'latest' is invalid"):
        VersionPolicy.parse("latest")
    assert VersionPolicy.next_integer().first_candidate(41) == 42
    assert VersionPolicy.explicit(9).first_candidate(41) == 9
    assert VersionPolicy.timestamp().first_candidate(0) > 1_700_000_000
    assert VersionPolicy.timestamp().first_candidate(5_000_000_000) == 5_000_000_001


def test_registry_uris(tmp_path):
    store = open_store(f"file://{tmp_path}/reg/")
    assert store.root == f"{tmp_path}/reg" and store.uri == f"file://{tmp_path}/reg"
    assert store.uri_of(store.join("m", "1")) == f"file://{tmp_path}/reg/m/1"
    with pytest.raises(InvalidNameError, match="must not contain '..'"):
        open_store("gs://bucket/a/../b")
    with pytest.raises(InvalidNameError, match="is not inside"):
        store.path_of("/elsewhere/x")
    with pytest.raises(InvalidNameError, match="URI is empty"):
        open_store("")


def test_local_paths():
    assert local_path("/data/reg") == "/data/reg" and local_path("relative/reg") == "relative/reg"
    assert local_path("file:///data/reg") == "/data/reg"
    assert local_path("file://localhost/data/reg") == "/data/reg"  # RFC 8089
    assert local_path("gs://bucket/reg") is None and local_path("memory://x") is None
    with pytest.raises(InvalidNameError, match="must name a local path"):
        local_path("file://fileserver/data/reg")


def test_manifest_checksums_match_reference_implementations(tmp_path):
    export = tmp_path / "e"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"123456789")
    big = bytes(range(256)) * 70_000  # > one read chunk
    (export / "variables" / "variables.data-00000-of-00001").write_bytes(big)
    manifest = build_manifest(str(export))
    entries = manifest.by_path()
    assert sorted(entries) == ["saved_model.pb", "variables/variables.data-00000-of-00001"]
    # crc32c("123456789") = 0xE3069283, base64 of the big-endian bytes, as GCS shows it
    assert entries["saved_model.pb"].crc32c == base64.b64encode(bytes.fromhex("e3069283")).decode()
    data = entries["variables/variables.data-00000-of-00001"]
    assert data.size == len(big)
    assert data.sha256 == hashlib.sha256(big).hexdigest()
    assert data.crc32c == base64.b64encode(google_crc32c.Checksum(big).digest()).decode()
    assert Manifest.from_list(manifest.to_list()) == manifest
    assert [e.path for e in manifest.markers()] == ["saved_model.pb"]


def test_manifest_refuses_bad_directories(tmp_path):
    with pytest.raises(StorageError, match="missing: not a directory"):
        build_manifest(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="empty: directory is empty"):
        build_manifest(str(tmp_path / "empty"))


def test_release_record_round_trip_and_bad_records():
    manifest = Manifest.from_list([{"path": "saved_model.pb", "size": 3, "crc32c": "AAAAAA==",
                                    "sha256": "00" * 32}])
    record = ReleaseRecord.build(model_name="m", version=4, uri="gs://b/r/m/4", job_key="j",
                                 manifest=manifest, created="2026-01-01T00:00:00+00:00",
                                 release_info={"fingerprint": {"a": 1}, "signatures": {"s": {}},
                                               "tensorflow_version": "2.21.0",
                                               "job_spec_sha256": "ff" * 32, "team": "x"})
    data = json.loads(record.to_json())
    assert data["schema"] == "tf-bigexport.release/2" and data["total_bytes"] == 3
    assert data["extra"] == {"team": "x"} and data["tensorflow_version"] == "2.21.0"
    assert ReleaseRecord.from_json(record.to_json()) == record
    with pytest.raises(StorageError, match="rec.json: not valid JSON"):
        ReleaseRecord.from_json("{", where="rec.json")
    with pytest.raises(StorageError, match="rec.json: schema is 'other'"):
        ReleaseRecord.from_json('{"schema": "other"}', where="rec.json")
    with pytest.raises(StorageError, match="rec.json: malformed field"):
        ReleaseRecord.from_json('{"schema": "tf-bigexport.release/1"}', where="rec.json")
    with pytest.raises(StorageError, match="not JSON-serializable"):
        ReleaseRecord.build(model_name="m", version=1, uri="u", job_key="j", manifest=manifest,
                            created="", release_info={"bad": object()})


def test_storage_never_imports_tensorflow():
    import subprocess
    import sys

    code = "import sys, storage; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["a..b", "x" * 129, "model\n", "mödel", "-x", ""])
def test_jobs_file_and_storage_refuse_the_same_model_names(name, tmp_path):
    from tf_bigexport.pipeline.jobs import JobsFileError, parse_jobs
    with pytest.raises(InvalidNameError):
        validate_model_name(name)
    job = {"name": name, "factory": "m:f", "signatures": {"serving_default": []}}
    with pytest.raises(JobsFileError, match="field 'name'"):
        parse_jobs({"registry": str(tmp_path), "jobs": [job]}, source="jobs.yaml", base_dir=str(tmp_path))


@pytest.mark.parametrize("text", ["１２", "٣", "12\n", "+3", "0", str(2**63), "2**70"])
def test_versions_are_ascii_digits_within_int64(text):
    from tf_bigexport.storage.names import parse_version
    assert parse_version(text) is None


def test_versions_parse_from_ascii_text_and_ints():
    from tf_bigexport.storage.names import parse_version
    assert parse_version("12") == 12 and parse_version(7) == 7 and parse_version(True) is None


@pytest.mark.parametrize("uri", ["s3://AKIAFAKE:wJalr-Secret-XYZ@bucket/models",
                                 "gs://oauth2:ya29.Secret-XYZ@bucket/models",
                                 "gs://bucket/models?access_token=ya29.Secret-XYZ",
                                 "s3://bucket/models?X-Amz-Signature=Secret-XYZ&X-Amz-Credential=a",
                                 "gs://bucket/models#Secret-XYZ"])
def test_credentials_in_uris_are_refused_saying_how_to_pass_them(uri, tmp_path):
    from tf_bigexport.storage import Registry, uri_problem
    problem = uri_problem(uri)
    assert problem and "Secret-XYZ" not in problem
    assert "--storage_options" in problem and "TF_BIGEXPORT_STORAGE_OPTIONS" in problem
    assert "AWS_ACCESS_KEY_ID" in problem and "never in the URI" in problem
    with pytest.raises(InvalidNameError) as caught:
        Registry(uri)
    assert "Secret-XYZ" not in str(caught.value) and "storage options" in str(caught.value)


def test_file_localhost_is_the_local_path(tmp_path):
    """RFC 8089: file://localhost/p is /p (it used to publish under ./localhost/p)."""
    from tf_bigexport.storage import Registry, VersionPolicy
    from storage_testkit import make_export
    record = Registry(f"file://localhost{tmp_path}/reg").publish(
        str(make_export(tmp_path / "e")), "m", VersionPolicy.next_integer(), {}, "job-a")
    assert (tmp_path / "reg" / "m" / "1" / "saved_model.pb").is_file()
    assert record.uri == f"file://localhost{tmp_path}/reg/m/1"
    with pytest.raises(InvalidNameError, match="must name a local path"):
        Registry("file://fileserver/data/reg")


def test_redactor_masks_every_form_of_a_secret():
    import base64
    from urllib.parse import quote
    from tf_bigexport.storage.redact import Redactor
    secret = "tok/en+with=chars"
    text = Redactor({"token": secret}).text(
        f"raw {secret} url {quote(secret, safe='')} b64 {base64.b64encode(secret.encode()).decode()}")
    assert text == "raw *** url *** b64 ***"
