"""What the emulators really do, and that the registry copes.

Findings (gcp-storage-emulator 2026.7.19, moto 5.2.5):
- gcp-storage-emulator ignores ifGenerationMatch=0: a second create-only
  upload silently overwrites. The registry detects this with a probe and
  claims versions through generation-ordered bids instead.
- gcp-storage-emulator's multipart (simple) upload parser drops a trailing
  b"\\r" from the object. The registry uploads such small files with a
  one-chunk resumable upload; and verification catches the corruption if
  anything else writes one.
- moto honours If-None-Match: * on PutObject, but checks existence and
  writes in two steps without a lock, so two simultaneous creates can both
  pass; the registry reads the claim back after creating it.
"""

from __future__ import annotations

import uuid

from tf_bigexport.storage import VersionPolicy, build_manifest, objects
from storage_testkit import export_files, make_export, read_tree


def test_backend_create_only_behaviour_is_detected(registry_target):
    """The registry's probe agrees with what the backend really does."""
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    path = f"{root}/probe-{uuid.uuid4().hex}"
    assert objects.create_exclusive(fs, path, b"first")
    refused = not objects.create_exclusive(fs, path, b"second")
    reg = registry_target.registry()
    assert reg._claims.exclusive_create == refused
    assert fs.cat_file(path) == (b"first" if refused else b"second")
    # Observed: local and moto refuse the second create; gcp-storage-emulator accepts it.
    assert refused == (registry_target.kind != "gcs")


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


def test_emulator_truncation_is_caught_by_staging_verification(gcs_emulator, tmp_path):
    """Written around the registry's workaround: the plain multipart path loses the byte."""
    export = make_export(tmp_path / "e")
    (export / "assets" / "tail.bin").write_bytes(b"xyz\r")
    manifest = build_manifest(str(export))
    from tf_bigexport.storage import Registry

    reg = Registry(gcs_emulator.uri(f"reg-{uuid.uuid4().hex[:8]}"),
                   storage_options=gcs_emulator.storage_options)
    staging = reg.stage(str(export), manifest, "job-t")
    fs = reg.filesystem
    fs.pipe_file(fs._strip_protocol(staging) + "/assets/tail.bin", b"xyz\r")  # multipart upload
    fs.invalidate_cache()
    found = reg.verify_staged(staging, manifest)
    assert [(m.path, m.reason, m.expected, m.actual) for m in found] == [("assets/tail.bin", "size", 4, 3)]
