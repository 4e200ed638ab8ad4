"""Reruns of a pipeline job (same run id, fresh work dir) against what an earlier, killed run left.

TensorFlow's saves are not byte-reproducible (fingerprint.pb carries a fresh
uuid), so a rerun that saves again has other bytes than the version already
(partly) published. It must report that version, never rewrite it.
"""
from __future__ import annotations

import json
import os
import uuid

import apache_beam as beam
import pytest

from hostile_testkit import tiny_job
from tf_bigexport import storage
from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.direct import export_directly
from tf_bigexport.pipeline.graph import to_task
from tf_bigexport.pipeline.jobs import parse_jobs
from tf_bigexport.transforms import commit, fingerprint, stage, trace_and_save, verify
from storage_testkit import read_tree


def _job(registry: str):
    # The factory (tests/hostile_models.py) is imported from the jobs file's directory.
    [job] = parse_jobs({"registry": registry, "jobs": [tiny_job("tiny", seed=3)]}, source="jobs.json",
                       base_dir=os.path.dirname(os.path.abspath(__file__)))
    return job


def _saved(job, work_root, run_id):
    task = to_task(job, work_root=str(work_root), run_id=run_id)
    return fingerprint.fingerprint(trace_and_save.trace_and_save(task))


def _tree_and_inodes(root):
    return {p.relative_to(root).as_posix(): (p.read_bytes(), os.stat(p).st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_never_rewrites_a_published_version(tmp_path):
    """What a run killed right after its release record left on a local registry: the staged
    files still there, as hard links of the published ones (how commits used to copy)."""
    registry = tmp_path / "reg"
    job = _job(str(registry))
    first = export_directly(job, work_root=str(tmp_path / "w1"), run_id="r1")
    version_dir = registry / "tiny" / "1"
    staging = registry / ".staging" / first.task.job_key
    for path in version_dir.rglob("*"):
        if path.is_file():
            target = staging / path.relative_to(version_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    before = _tree_and_inodes(version_dir)

    again = export_directly(job, work_root=str(tmp_path / "w2"), run_id="r1")
    assert (again.version, again.release_record["uri"]) == (1, first.release_record["uri"])
    assert _tree_and_inodes(version_dir) == before
    assert storage.Registry(str(registry)).verify_version("tiny", 1) == []
    assert not staging.exists()


@pytest.mark.parametrize("kind", ["local", "gcs"])
def test_rerun_finishes_a_version_cut_short_after_its_program_file(kind, request, tmp_path):
    """Killed between the program file and the release record, then rerun with the same run id
    and a fresh work dir: the version TensorFlow already sees gets its record (it used to fail
    forever with '1 file(s) do not match: fingerprint.pb')."""
    if kind == "gcs":
        emulator = request.getfixturevalue("gcs_emulator")
        uri, options = emulator.uri(f"rerun-{uuid.uuid4().hex[:8]}"), dict(emulator.storage_options)
    else:
        uri, options = str(tmp_path / "reg"), {}
    job = _job(uri)
    state = _saved(job, tmp_path / "w1", "r1")

    def killed(step):
        if step == "marker":
            raise RuntimeError("killed")

    registry = storage.Registry(uri, storage_options=options, step_hook=killed)
    with pytest.raises((RuntimeError, storage.StorageError), match="killed"):
        registry.publish(state.saved_dir, "tiny", storage.VersionPolicy.next_integer(),
                         commit.release_info(state), state.task.job_key)
    registry = storage.Registry(uri, storage_options=options)
    fs = registry.filesystem
    root = registry.store.root
    visible = read_tree(fs, f"{root}/tiny/1")
    assert "saved_model.pb" in visible and registry.list_versions("tiny") == []

    rerun = export_directly(job, work_root=str(tmp_path / "w2"), run_id="r1", storage_options=options)
    assert rerun.version == 1
    assert rerun.release_record["fingerprint"] == state.fingerprint  # the bytes that are published
    assert read_tree(fs, f"{root}/tiny/1") == visible
    assert registry.list_versions("tiny") == [1] and registry.verify_version("tiny", 1) == []
    assert read_tree(fs, f"{root}/.staging") == {}


def test_verify_says_what_state_a_version_is_in(tmp_path, capsys):
    job = _job(str(tmp_path / "reg"))
    state = _saved(job, tmp_path / "w1", "r1")

    def killed(step):
        if step == "marker":
            raise RuntimeError("killed")

    with pytest.raises((RuntimeError, storage.StorageError)):
        storage.Registry(str(tmp_path / "reg"), step_hook=killed).publish(
            state.saved_dir, "tiny", storage.VersionPolicy.next_integer(), commit.release_info(state),
            state.task.job_key)
    assert cli.main(["verify", str(tmp_path / "reg" / "tiny" / "1")]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert ("tiny/1: unrecorded: incomplete: program file present but no release record; "
            "a rerun of job tiny.r1 (same run id) finishes it") in err
    assert cli.main(["verify", str(tmp_path / "reg" / "tiny" / "2")]) == cli.EXIT_FAILED
    assert "tiny/2: free: nothing there" in capsys.readouterr().err


# ---- one verify, one Registry per DoFn -------------------------------------------------

def _append_line(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(text) + "\n")


def test_verify_gives_the_same_message_as_a_function_and_on_beam(tmp_path, monkeypatch):
    job = _job(str(tmp_path / "reg"))
    staged = stage.stage(_saved(job, tmp_path / "w1", "r1"))
    damaged = os.path.join(staged.staging_uri, "variables", "variables.index")
    opened = []
    real_init = storage.Registry.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("uri"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(storage.Registry, "__init__", counting_init)
    with open(damaged, "r+b") as f:
        f.write(b"\xff")
    failures = tmp_path / "failures.jsonl"
    with beam.Pipeline() as pipeline:
        _, failed = pipeline | beam.Create([staged]) | verify.Verify()
        _ = failed | beam.Map(lambda failure, path=str(failures): _append_line(path, failure.error))
    [on_beam] = [json.loads(line) for line in failures.read_text().splitlines()]
    # one Registry per DoFn instance, not one per staged file
    assert 1 <= len(opened) <= 2 < len(staged.manifest.files), opened

    staged = stage.stage(staged)  # verification dropped the bad bytes; stage and damage them again
    with open(damaged, "r+b") as f:
        f.write(b"\xff")
    with pytest.raises(verify.VerificationFailed) as caught:
        verify.verify(staged)
    assert on_beam == f"VerificationFailed: {caught.value}"
    assert "variables/variables.index: crc32c (expected" in on_beam
