"""The publish protocol (storage.Publication) under the failures issue 13 lists.

- a published file shares no storage with anything a later write changes;
- a commit cut short between the program file and the record is finished by a
  rerun of the same job from what is there, even with other bytes at hand;
- a full disk while writing the record leaves no temporary file, and the
  rerun converges;
- storage errors keep their (masked) cause chain.
"""
from __future__ import annotations

import os
import subprocess
import traceback

import pytest

from tf_bigexport.storage import Registry, StorageError, VersionPolicy, build_manifest
from tf_bigexport.storage.release_state import PUBLISHED, UNRECORDED
from storage_testkit import export_files, make_export, read_tree

INFO = {"fingerprint": {"saved_model_checksum": "1"}, "tensorflow_version": "2.21.0"}


class Stop(RuntimeError):
    pass


def _stop_at(step):
    def hook(name):
        if name == step:
            raise Stop(f"stopped after {step}")
    return hook


def test_published_files_share_no_storage(tmp_path):
    """Local commits copy, never hard-link: a later write through a staging name cannot reach them."""
    export = make_export(tmp_path / "e")
    root = tmp_path / "reg"
    links = {}

    def hook(step):
        if step in ("marker", "recorded"):
            links[step] = {p.relative_to(root / "m" / "1").as_posix(): os.stat(p).st_nlink
                           for p in (root / "m" / "1").rglob("*") if p.is_file()}

    Registry(str(root), step_hook=hook).publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    assert set(links["recorded"]) == set(export_files(export))
    assert set(links["marker"].values()) == set(links["recorded"].values()) == {1}


def test_commit_cut_short_after_the_program_file_is_finished_from_what_is_there(registry_target, tmp_path):
    """The rerun of the same job has other bytes at hand (TensorFlow saves are not byte-reproducible,
    and a fresh work dir saves again): the version stays as it became visible, and gets its record."""
    first, second = make_export(tmp_path / "a", seed=1), make_export(tmp_path / "b", seed=2)
    with pytest.raises((Stop, StorageError)):
        registry_target.registry(step_hook=_stop_at("marker")).publish(
            str(first), "m", VersionPolicy.next_integer(), INFO, "m.run-1")
    reg = registry_target.registry()
    state = reg.release_state("m", 1)
    assert state.state == UNRECORDED and "a rerun of job m.run-1 (same run id) finishes it" in state.detail

    publication = reg.publication("m", "m.run-1", build_manifest(str(second)))
    record = publication.published()  # what the pipeline's stage step asks before any upload
    assert record is not None and record.version == 1
    assert record.manifest.by_path() != publication.manifest.by_path()  # the first export's files
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    assert read_tree(fs, f"{root}/m/1") == export_files(first)
    assert reg.release_state("m", 1).state == PUBLISHED and reg.verify_version("m", 1) == []
    assert [v["version"] for v in reg.read_index("m")["versions"]] == [1]
    publication.clean()
    assert read_tree(fs, f"{root}/.staging") == {}


def test_an_unrecorded_version_without_a_draft_is_reported_not_guessed(registry_target, tmp_path):
    export = make_export(tmp_path / "e")
    with pytest.raises((Stop, StorageError)):
        registry_target.registry(step_hook=_stop_at("marker")).publish(
            str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    fs.rm(f"{root}/.staging/.drafts/job-a.json")
    reg = registry_target.registry()
    assert "nothing to finish it from" in reg.release_state("m", 1).detail
    with pytest.raises(StorageError, match=r"m/1: incomplete: program file present but no release record"):
        reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")


@pytest.fixture
def small_registry(tmp_path):
    """A 4 MiB tmpfs to publish into (mounting needs root, which the test machines have)."""
    directory = tmp_path / "reg"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def test_disk_full_while_recording_leaves_no_temporary_file_and_the_rerun_converges(small_registry, tmp_path):
    export = make_export(tmp_path / "e", big=200_000)
    filler = small_registry / "filler"

    def fill(step):
        if step == "marker":  # the program file is in place; now the disk is full
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (64 << 10))
                        f.flush()
                except OSError:
                    pass

    with pytest.raises(StorageError, match=r"cannot write .*\.releases/1\.json: No space left on device"):
        Registry(str(small_registry), step_hook=fill).publish(str(export), "m", VersionPolicy.next_integer(),
                                                              INFO, "job-a")
    leftovers = [str(p.relative_to(small_registry)) for p in small_registry.rglob("*")
                 if ".tmp" in p.name or ".partial" in p.name]
    assert leftovers == []
    filler.unlink()
    reg = Registry(str(small_registry))
    assert reg.release_state("m", 1).state == UNRECORDED
    record = reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    assert record.version == 1 and reg.verify_version("m", 1) == []


def test_storage_errors_keep_their_cause_chain_masked(s3_emulator, tmp_path):
    secret = "Sup3r-S3cret-Value-42x"
    options = dict(s3_emulator.storage_options, secret=secret)
    reg = Registry(s3_emulator.uri("chain"), storage_options=options)
    export = make_export(tmp_path / "e")
    reg.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-a")
    bad = Registry("s3://no-such-bucket-chain/r", storage_options=options)
    with pytest.raises(StorageError) as caught:
        bad.publish(str(export), "m", VersionPolicy.next_integer(), INFO, "job-b")
    error = caught.value
    chain, link = [], error.__cause__
    while link is not None:
        chain.append(link)
        link = link.__cause__
    assert chain, "the cause chain was dropped"
    assert all(type(link).__name__ == "MaskedError" for link in chain)
    assert any("no-such-bucket-chain" in str(link) or "NoSuchBucket" in str(link) for link in chain)
    shown = "".join(traceback.format_exception(error))
    assert "The above exception was the direct cause" in shown
    assert secret not in shown and error.__context__ is None


def test_a_registry_that_cannot_be_opened_keeps_its_cause_chain_masked():
    """The backend's own constructor fails (an OAuth token dict without its refresh token)."""
    secret = "Sup3r-0auth-Value-42x"
    with pytest.raises(StorageError, match="cannot open registry: KeyError") as caught:
        Registry("gs://chain/r", storage_options={"token": {"client_id": "x", "client_secret": secret}})
    error = caught.value
    assert type(error.__cause__).__name__ == "MaskedError" and "refresh_token" in str(error.__cause__)
    shown = "".join(traceback.format_exception(error))
    assert secret not in shown and error.__context__ is None
