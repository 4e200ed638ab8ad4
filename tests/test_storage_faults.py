"""Crash at every protocol step (exception, or SIGKILL of a child process), then re-run.

After the crash: no visible (marker-bearing) version directory misses a file,
the earlier published version is byte-identical, and a re-run with the same
job key converges on one complete, verified version and an empty staging area.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tf_bigexport.storage import PUBLISH_STEPS, StorageError, VersionPolicy
from storage_testkit import assert_no_incomplete_visible, export_files, make_export, read_tree

REPO = Path(__file__).resolve().parents[1]
INFO = {"fingerprint": {"v": 2}, "tensorflow_version": "2.21.0"}

CHILD = r"""
import json, os, signal, sys
from tf_bigexport.storage import Registry, VersionPolicy
args = json.loads(sys.argv[1])
def hook(step):
    if step == args["step"]:
        os.kill(os.getpid(), signal.SIGKILL)
reg = Registry(args["uri"], storage_options=args["options"], step_hook=hook)
reg.publish(args["export"], "m", VersionPolicy.next_integer(), args["info"], args["job"])
"""


class Boom(RuntimeError):
    pass


@pytest.fixture
def published_v1(registry_target, tmp_path):
    """A registry holding version 1 of model m, and a snapshot of it."""
    first = make_export(tmp_path / "first", seed=1)
    reg = registry_target.registry()
    assert reg.publish(str(first), "m", VersionPolicy.next_integer(), {}, "job-1").version == 1
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    snapshot = (read_tree(fs, f"{root}/m/1"), fs.cat_file(f"{root}/m/.releases/1.json"))
    return first, root, snapshot


def _check_after_crash_and_rerun(registry_target, fs, root, first, second, snapshot, others=None):
    exports = {1: first, **(others or {})}
    assert_no_incomplete_visible(fs, f"{root}/m", exports, second)
    assert (read_tree(fs, f"{root}/m/1"), fs.cat_file(f"{root}/m/.releases/1.json")) == snapshot

    reg = registry_target.registry()
    record = reg.publish(str(second), "m", VersionPolicy.next_integer(), INFO, "job-2")
    assert record.version == 2
    assert reg.verify_version("m", 2) == []
    assert reg.list_versions("m") == sorted({1, 2, *exports})
    assert [v["version"] for v in reg.read_index("m")["versions"]] == sorted({1, 2, *exports})
    assert_no_incomplete_visible(fs, f"{root}/m", exports, second)
    assert (read_tree(fs, f"{root}/m/1"), fs.cat_file(f"{root}/m/.releases/1.json")) == snapshot
    assert read_tree(fs, f"{root}/.staging") == {}


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_exception_after_step_then_rerun_converges(registry_target, tmp_path, published_v1, step):
    first, root, snapshot = published_v1
    second = make_export(tmp_path / "second", seed=2)
    fs = registry_target.filesystem()

    def hook(name):
        if name == step:
            raise Boom(f"injected after {step}")

    reg = registry_target.registry(step_hook=hook)
    with pytest.raises((Boom, StorageError), match=f"injected after {step}"):
        reg.publish(str(second), "m", VersionPolicy.next_integer(), INFO, "job-2")
    # Staging is kept until the commit is done: a retry uploads only what is missing.
    staged = read_tree(fs, f"{root}/.staging/job-2")
    assert staged == ({} if step == "cleaned" else export_files(second))
    uploads = []
    rerun = registry_target.registry()
    real_put = rerun.store.put_file
    rerun.store.put_file = lambda *a, **k: uploads.append(a[1]) or real_put(*a, **k)
    assert rerun.publish(str(second), "m", VersionPolicy.next_integer(), INFO, "job-2").version == 2
    assert uploads == []
    _check_after_crash_and_rerun(registry_target, fs, root, first, second, snapshot)


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_killed_after_step_then_rerun_converges(registry_target, tmp_path, published_v1, step):
    first, root, snapshot = published_v1
    second = make_export(tmp_path / "second", seed=2)
    fs = registry_target.filesystem()
    args = {"uri": registry_target.uri, "options": registry_target.storage_options,
            "export": str(second), "info": INFO, "job": "job-2", "step": step}
    env = dict(os.environ, PYTHONPATH=str(REPO), GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=env,
                           capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    _check_after_crash_and_rerun(registry_target, fs, root, first, second, snapshot)


def test_resume_of_partially_copied_version(registry_target, tmp_path, published_v1):
    """Payload copied, marker not: only the claiming job may finish it, and it does."""
    first, root, snapshot = published_v1
    second = make_export(tmp_path / "second", seed=2)
    fs = registry_target.filesystem()

    def hook(name):
        if name == "copied":
            raise Boom("stop before the marker")

    with pytest.raises((Boom, StorageError)):
        registry_target.registry(step_hook=hook).publish(
            str(second), "m", VersionPolicy.next_integer(), INFO, "job-2")
    partial = read_tree(fs, f"{root}/m/2")
    assert partial and "saved_model.pb" not in partial
    intruder = make_export(tmp_path / "intruder", seed=3)
    reg = registry_target.registry()
    from tf_bigexport.storage import VersionConflictError

    with pytest.raises(VersionConflictError, match="version 2 of model 'm'"):
        reg.publish(str(intruder), "m", VersionPolicy.explicit(2), {}, "job-intruder")
    assert reg.publish(str(intruder), "m", VersionPolicy.next_integer(), {}, "job-intruder").version == 3
    _check_after_crash_and_rerun(registry_target, fs, root, first, second, snapshot, {3: intruder})
    assert read_tree(fs, f"{root}/m/3") == {p.relative_to(intruder).as_posix(): p.read_bytes()
                                             for p in intruder.rglob("*") if p.is_file()}
