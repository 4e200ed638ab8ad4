"""Load: many jobs at once on the multi-process DirectRunner, and several pipelines racing
for versions of one model, against the GCS emulator.

The 8-job run is the CI size; the 12- and 50-job runs and the three racing pipelines are `slow`. Figures (jobs, seconds,
peak RSS per process kind) are printed and written for SECURITY.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from hostile_testkit import child_env, pipeline_command, report, tiny_job, write_jobs
from tf_bigexport.storage import Registry

PAGE = os.sysconf("SC_PAGE_SIZE")
# Generous: a worker holding TensorFlow, Beam and a few tiny models uses well under 1 GiB.
MAX_RSS_PER_PROCESS = 3 << 30


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, resident bytes, command line) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited while we looked
            continue
        table[int(entry)] = (int(fields[1]), int(fields[21]) * PAGE, cmdline)
    return table


def _kind(cmdline: str) -> str:
    if "sdk_worker_main" in cmdline or "worker_pool_main" in cmdline:
        return "beam_worker"
    if "reload_check" in cmdline or "tf_bigexport.transforms.reload" in cmdline:
        return "reload_check"
    if "trace_and_save_child" in cmdline:
        return "trace_and_save"  # the process that builds, traces and saves one model
    if "-m tf_bigexport" in cmdline:
        return "pipeline_main"
    return "other"


class RssSampler:
    """Samples the resident size of a process tree every `interval` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.25) -> None:
        self.root = root_pid
        self.interval = interval
        self.peak: dict[int, tuple[int, str]] = {}  # pid -> (peak bytes, kind)
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            table = _process_table()
            tree, frontier = {self.root}, [self.root]
            while frontier:
                parent = frontier.pop()
                for pid, (ppid, _, _) in table.items():
                    if ppid == parent and pid not in tree:
                        tree.add(pid)
                        frontier.append(pid)
            total = 0
            for pid in tree & set(table):
                _, rss, cmdline = table[pid]
                total += rss
                if rss > self.peak.get(pid, (0, ""))[0]:
                    self.peak[pid] = (rss, _kind(cmdline))
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def by_kind(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rss, kind in self.peak.values():
            entry = out.setdefault(kind, {"processes": 0, "peak_rss_mib": 0})
            entry["processes"] += 1
            entry["peak_rss_mib"] = max(entry["peak_rss_mib"], rss >> 20)
        return out


def _run_many(gcs_emulator, tmp_path, count: int) -> None:
    prefix = f"load-{count}-{uuid.uuid4().hex[:8]}"
    registry_uri = gcs_emulator.uri(prefix)
    names = [f"tiny-{i:03d}" for i in range(count)]
    jobs = write_jobs(tmp_path / "jobs.json", [tiny_job(n, seed=i) for i, n in enumerate(names)],
                      registry=registry_uri)
    command = pipeline_command("run", "--jobs", str(jobs), "--storage_options",
                               json.dumps(gcs_emulator.storage_options),
                               "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    start = time.monotonic()
    proc = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with RssSampler(proc.pid) as sampler:
        out, err = proc.communicate(timeout=1800)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, (out[-2000:], err[-4000:])

    registry = Registry(registry_uri, storage_options=gcs_emulator.storage_options)
    for name in names:
        assert registry.list_versions(name) == [1], name
        assert registry.verify_version(name, 1) == [], name
        assert f"{name}  1 " in out
    kinds = sampler.by_kind()
    assert kinds.get("beam_worker", {}).get("processes", 0) >= 2, kinds  # really multi-process
    for pid, (rss, kind) in sampler.peak.items():
        assert rss < MAX_RSS_PER_PROCESS, (pid, kind, rss >> 20)
    report(f"load_{count}_jobs", {"jobs": count, "published": count, "verified": count, "lost": 0,
                                  "workers": 2, "seconds": round(seconds, 1),
                                  "peak_rss_mib_by_process_kind": kinds,
                                  "peak_rss_mib_whole_tree": sampler.peak_total >> 20})


def test_eight_jobs_on_two_worker_processes(gcs_emulator, tmp_path):
    # Each job's verification reloads the model in a fresh TensorFlow process (~5 s of CPU):
    # 8 jobs keep this under a minute on two cores.
    _run_many(gcs_emulator, tmp_path, 8)


@pytest.mark.slow
def test_twelve_jobs_on_two_worker_processes(gcs_emulator, tmp_path):
    _run_many(gcs_emulator, tmp_path, 12)


@pytest.mark.slow
def test_fifty_jobs_on_two_worker_processes(gcs_emulator, tmp_path):
    _run_many(gcs_emulator, tmp_path, 50)


@pytest.mark.slow  # three TensorFlow processes at once, ~50 s; storage races are in test_storage_race.py
def test_concurrent_pipelines_publishing_one_model_get_unique_contiguous_versions(gcs_emulator, tmp_path):
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    registry_uri = gcs_emulator.uri(prefix)
    options = json.dumps(gcs_emulator.storage_options)
    procs = []
    for i in range(3):
        jobs = write_jobs(tmp_path / f"jobs-{i}.json", [tiny_job("shared", seed=i)], registry=registry_uri)
        procs.append(subprocess.Popen(
            pipeline_command("run", "--jobs", str(jobs), "--storage_options", options, "--run_id", f"racer-{i}"),
            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-3000:]
    registry = Registry(registry_uri, storage_options=gcs_emulator.storage_options)
    assert registry.list_versions("shared") == [1, 2, 3]
    owners = {registry.read_release_record("shared", v).job_key for v in (1, 2, 3)}
    assert owners == {"shared.racer-0", "shared.racer-1", "shared.racer-2"}
    for version in (1, 2, 3):
        assert registry.verify_version("shared", version) == []
    report("load_concurrent_next", {"publishers": 3, "versions": [1, 2, 3], "duplicates": 0, "gaps": 0})
