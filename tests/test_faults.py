"""Faults while publishing: flaky object stores, forbidden writes, killed pipelines, full disks.

- Transient HTTP faults (5xx, 429, resets, responses lost after the store acted)
  injected by tests/fault_proxy.py between gcsfs/s3fs and the emulators are
  retried; every publish completes with the exact bytes.
- Permanent errors (403 on the version directory) fail the publish, leave no
  version, and a later run converges.
- `python -m tf_bigexport run` SIGKILLed at random points of save, stage, verify
  and commit (FAULT_SEEDS runs, default 5) never leaves a visible version that
  differs from its release record; earlier versions stay byte-identical; the
  rerun converges.
- A disk that fills up during save: a clear error naming the job, scratch cleaned.
"""
from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from fault_proxy import FaultProxy
from hostile_testkit import (check_visible_versions, child_env, numeric_dirs, pipeline_command, report, tiny_job,
                             write_jobs)
from tf_bigexport.storage import Registry, RetryPolicy, StorageError, VersionPolicy
from storage_testkit import export_files, make_export, read_tree

FAST = RetryPolicy(attempts=6, base_delay=0.05, max_delay=0.5)
# Each seed is one pipeline process (TensorFlow import, ~5-10 s): 5 in CI, more by hand.
FAULT_SEEDS = int(os.environ.get("FAULT_SEEDS", "5"))


def _proxied_options(kind: str, emulator, endpoint: str) -> dict:
    from emulators import gcs_storage_options, s3_storage_options
    return gcs_storage_options(endpoint) if kind == "gcs" else s3_storage_options(endpoint)


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_transient_http_faults_are_retried_and_every_publish_completes(kind, request, tmp_path):
    emulator = request.getfixturevalue(f"{kind}_emulator")
    exports = [make_export(tmp_path / f"e{i}", seed=40 + i, big=60_000) for i in range(2)]
    prefix = f"flaky-{kind}-{os.getpid()}-{time.monotonic_ns()}"
    with FaultProxy(emulator.endpoint, seed=len(prefix), rate=0.3, budget=15) as proxy:
        flaky = Registry(emulator.uri(prefix), storage_options=_proxied_options(kind, emulator, proxy.endpoint),
                         retry=FAST, workers=4)
        records = [flaky.publish(str(e), "m", VersionPolicy.next_integer(), {"n": i}, f"job-{i}")
                   for i, e in enumerate(exports)]
    assert [r.version for r in records] == [1, 2]
    assert sum(proxy.injected.values()) >= 10, proxy.injected  # the faults really happened
    clean = Registry(emulator.uri(prefix), storage_options=emulator.storage_options)
    fs = clean.filesystem
    root = emulator.uri(prefix).split("://", 1)[1]
    for record, export in zip(records, exports):
        assert clean.verify_version("m", record.version) == []
        assert read_tree(fs, f"{root}/m/{record.version}") == export_files(export)
    assert clean.list_versions("m") == [1, 2]
    assert read_tree(fs, f"{root}/.staging") == {}
    report(f"faults_http_{kind}", {"requests": proxy.requests, "faults": dict(proxy.injected),
                                   "publishes": len(records), "publishes_completed": len(records),
                                   "files_lost": 0})


def test_permanent_error_fails_the_publish_and_leaves_no_version(gcs_emulator, tmp_path):
    export = make_export(tmp_path / "e", seed=7)
    prefix = f"forbidden-{time.monotonic_ns()}"
    # every write into the numeric version directory is refused, as if the bucket policy denied it
    with FaultProxy(gcs_emulator.endpoint, forbid=r"^(POST|PUT) .*m%2F1%2F") as proxy:
        registry = Registry(gcs_emulator.uri(prefix), retry=FAST,
                            storage_options=_proxied_options("gcs", gcs_emulator, proxy.endpoint))
        with pytest.raises(StorageError, match="commit on gs:.*Forbidden") as caught:
            registry.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-p")
    assert proxy.injected["403"] >= 1 and "injected by fault_proxy" in str(caught.value)
    clean = Registry(gcs_emulator.uri(prefix), storage_options=gcs_emulator.storage_options)
    fs, root = clean.filesystem, gcs_emulator.uri(prefix).split("://", 1)[1]
    assert clean.list_versions("m") == []
    assert read_tree(fs, f"{root}/m/1") == {}
    assert read_tree(fs, f"{root}/.staging/job-p") == export_files(export)  # kept for the retry
    # the policy is lifted: the same job converges on the version it claimed
    assert clean.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-p").version == 1
    assert clean.verify_version("m", 1) == []
    assert read_tree(fs, f"{root}/.staging") == {}
    report("faults_permanent", {"forbidden_requests": proxy.injected["403"], "partial_versions": 0})


# ---- process death ----------------------------------------------------------------------

# Log lines the kill follows (after a seeded random 0-0.3 s), taken in turn: inside save, upload,
# verification and, twice, the commit (claim, copy, marker, record, index, cleanup). In pipeline
# order: once an attempt of the run id got past its commit, reruns have nothing left to do.
KILL_POINTS = [("save", "started"), ("stage", "started"), ("verify", "started"), ("commit", "started"),
               ("commit", "started"), ("commit", "done")]


def _run_killed(command: list[str], env: dict, seed: int) -> tuple[str, float]:
    """Runs the pipeline and SIGKILLs its process group at a seeded point; returns (point, delay)."""
    rng = random.Random(seed)
    stage, status = KILL_POINTS[seed % len(KILL_POINTS)]  # every point, in turn
    delay = rng.uniform(0.0, 0.3)
    trigger = f"stage={stage} status={status}"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = False
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if trigger in line:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        if not killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    if not killed and any("already published version" in line for line in seen):
        # An earlier attempt of this run id got past its commit: the rerun does no work (nothing to kill).
        return "already published", 0.0
    assert killed, f"seed {seed}: never reached {trigger}"
    return trigger, delay


def _snapshot(fs, root: str, models: list[str]) -> dict:
    return {m: (read_tree(fs, f"{root}/{m}/1"), fs.cat_file(f"{root}/{m}/.releases/1.json")) for m in models}


def test_killed_pipeline_never_shows_an_incomplete_version_and_rerun_converges(gcs_emulator, tmp_path):
    import json

    prefix = f"killed-{time.monotonic_ns()}"
    registry_uri = gcs_emulator.uri(prefix)
    models = ["a"]
    jobs = write_jobs(tmp_path / "jobs.json", [
        tiny_job(m, seed=i, factory_kwargs={"seed": i, "inputs": 64, "units": 256}, split_threshold=16_384,
                 signatures={"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 64]}]})
        for i, m in enumerate(models)], registry=registry_uri)
    env = child_env()
    options = json.dumps(gcs_emulator.storage_options)

    def command(run_id: str) -> list[str]:
        # -v: every stage's start is logged as it happens (the kill points below follow those lines)
        return pipeline_command("-v", "run", "--jobs", str(jobs), "--storage_options", options, "--run_id", run_id)

    crash = f"crash-{prefix}"  # one run id for every killed attempt and the rerun: they resume each other
    base = subprocess.run(command(f"base-{prefix}"), env=env, capture_output=True, text=True, timeout=300)
    assert base.returncode == 0, base.stderr[-3000:]
    registry = Registry(registry_uri, storage_options=gcs_emulator.storage_options)
    fs, root = registry.filesystem, registry_uri.split("://", 1)[1]
    before = _snapshot(fs, root, models)

    points: Counter[str] = Counter()
    incomplete_seen = Counter()
    for seed in range(FAULT_SEEDS):
        trigger, _ = _run_killed(command(crash), env, seed)
        points[trigger] += 1
        for model in models:
            counts = check_visible_versions(registry, fs, root, model)
            incomplete_seen.update({k: v for k, v in counts.items() if k != "complete"})
        assert _snapshot(fs, root, models) == before, f"seed {seed}: version 1 changed"

    final = subprocess.run(command(crash), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    for model in models:
        assert registry.list_versions(model) == [1, 2]
        assert numeric_dirs(fs, f"{root}/{model}") == [1, 2]
        assert check_visible_versions(registry, fs, root, model) == {"complete": 2, "without_marker": 0,
                                                                     "unrecorded": 0}
        assert registry.read_release_record(model, 2).job_key == f"{model}.{crash}"
    assert _snapshot(fs, root, models) == before
    assert read_tree(fs, f"{root}/.staging") == {}
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), "tf-bigexport", crash))
    report("faults_kill", {"kills": FAULT_SEEDS, "kill_points": dict(points),
                           "cut_short_commits_seen": dict(incomplete_seen),
                           "visible_versions_differing_from_record": 0, "earlier_versions_changed": 0,
                           "converged": True})


# ---- disk full ---------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m"):
    """A 1 MiB tmpfs (needs root); yields the preexec function for the child (none needed)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _file_size_limit():
    # SIGXFSZ would kill the child; ignored, writes past the limit fail with EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))


@pytest.mark.parametrize("how", ["tmpfs", "rlimit_fsize"])
def test_disk_full_during_save_is_a_clear_error_and_scratch_is_cleaned(tmp_path, how):
    if how == "tmpfs" and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the rlimit_fsize case covers this machine")
    work = tmp_path / "work"
    registry = tmp_path / "reg"
    jobs = write_jobs(tmp_path / "jobs.json", [
        tiny_job("big", factory_kwargs={"seed": 0, "inputs": 512, "units": 1024},  # a 2 MiB kernel
                 signatures={"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 512]}]})],
        registry=str(registry))
    with (small_disk(work) if how == "tmpfs" else contextlib.nullcontext()):
        if how != "tmpfs":
            work.mkdir()
        done = subprocess.run(pipeline_command("run", "--jobs", str(jobs), "--work_dir", str(work)),
                              env=child_env(), capture_output=True, text=True, timeout=300,
                              preexec_fn=_file_size_limit if how != "tmpfs" else None)
        leftovers = sorted(str(p.relative_to(work)) for p in work.rglob("*") if "saved_model" in p.name)
    assert done.returncode == 1, done.stderr[-3000:]
    reason = "No space left on device" if how == "tmpfs" else "File too large"
    assert "job 'big' failed in stage 'save'" in done.stdout, done.stdout
    assert reason in done.stdout, done.stdout
    assert leftovers == []  # the half-written save was removed
    assert not (registry / "big").exists()
    report(f"faults_disk_full_{how}", {"jobs": 1, "clear_error": True, "partial_saves_left": 0})
