"""The emulators as tests use them behave like the real stores where a publisher depends on it.

gcp-storage-emulator (2026.7.19) itself ignores ifGenerationMatch=0 and drops
a trailing b"\\r" of multipart uploads; tests reach it through
emulators.GcsConformanceProxy, which behaves like GCS. The first test shows
the raw emulator's faults (why the proxy exists); the others that the
endpoint every test uses has none of them, for all three backends.
"""

from __future__ import annotations

import uuid

import fsspec

from tf_bigexport.storage import VersionPolicy, open_store
from storage_testkit import export_files, make_export, read_tree


def test_raw_gcs_emulator_differs_from_gcs(gcs_emulator):
    from emulators import gcs_storage_options
    raw = fsspec.filesystem("gs", skip_instance_cache=True, **gcs_storage_options(gcs_emulator.upstream))
    path = f"{gcs_emulator.bucket}/raw-{uuid.uuid4().hex}"
    raw.pipe_file(f"{path}/a", b"first", mode="create")
    raw.pipe_file(f"{path}/a", b"second", mode="create")  # GCS would answer 412
    raw.pipe_file(f"{path}/b", b"xyz\r")
    raw.invalidate_cache()
    assert raw.cat_file(f"{path}/a") == b"second"
    assert raw.cat_file(f"{path}/b") == b"xyz"


def test_create_only_is_honoured(registry_target):
    store = open_store(registry_target.uri, registry_target.storage_options)
    path = store.join(f"probe-{uuid.uuid4().hex}")
    assert store.create_exclusive(path, b"first")
    assert not store.create_exclusive(path, b"second")
    assert store.read_bytes(path) == b"first"


def test_create_only_is_honoured_for_resumable_uploads(gcs_emulator):
    """Big objects go up in chunks (initiate, then PUTs): the precondition holds there too."""
    fs = gcs_emulator.filesystem()
    path = f"{gcs_emulator.bucket}/resumable-{uuid.uuid4().hex}"
    big = b"x" * (6 << 20)  # past gcsfs's single-request limit
    fs.pipe_file(path, big, mode="create")
    try:
        fs.pipe_file(path, b"y" * (6 << 20), mode="create")
        raise AssertionError("second create-only upload succeeded")
    except FileExistsError:
        pass
    fs.invalidate_cache()
    assert fs.cat_file(path) == big


def test_file_ending_in_carriage_return_is_published_intact(registry_target, tmp_path):
    export = make_export(tmp_path / "e")
    (export / "assets" / "crlf.txt").write_bytes(b"a\r\nb\r")
    (export / "variables" / "variables.index").write_bytes(b"\x00" * 999 + b"\r")
    reg = registry_target.registry()
    record = reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-cr")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    assert read_tree(fs, f"{root}/m/{record.version}") == export_files(export)
    assert reg.verify_version("m", record.version) == []
