"""`tf-bigexport gc` on what killed runs leave, on local disk, GCS and S3.

A registry is littered by publishes stopped after each protocol step, plus a
directory nobody claims and (locally) a temporary file; gc lists exactly the
leftovers, removes them with --apply (also when killed after every single
removal and run again), never touches a published or unrecorded version, and
refuses a registry it cannot fully read.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hostile_testkit import REPO, report
from tf_bigexport.pipeline import cli
from tf_bigexport.storage import StorageError, VersionPolicy
from tf_bigexport.storage.gc import collect, find_garbage
from tf_bigexport.storage.release_state import PUBLISHED, UNRECORDED
from storage_testkit import make_export, read_tree

INFO = {"fingerprint": {"saved_model_checksum": "1"}}
# version -> the step its publish is stopped after (None: published whole)
LITTER = {1: None, 2: "recorded", 3: "copied", 4: "marker", 5: "staged", 6: "claimed"}


class Stop(RuntimeError):
    pass


def litter(target, tmp_path) -> dict:
    """The registry and what is in it: {"fs", "root", "published": {version: tree}, "expected": {...}}."""
    for version, step in LITTER.items():
        def hook(name, step=step):
            if name == step:
                raise Stop(step)
        export = make_export(tmp_path / f"e{version}", seed=version, big=4000)
        try:
            target.registry(step_hook=hook).publish(str(export), "m", VersionPolicy.explicit(version), INFO,
                                                    f"job-{version}")
        except (Stop, StorageError):
            pass
    fs = target.filesystem()
    root = fs._strip_protocol(target.uri).rstrip("/")
    fs.makedirs(f"{root}/m/9/variables", exist_ok=True)
    fs.pipe_file(f"{root}/m/9/variables/variables.index", b"left by hand")  # no claim, no program file
    if target.kind == "local":
        fs.pipe_file(f"{root}/m/.releases/.1.json.tmp-0123456789ab", b'{"trunc')
    fs.invalidate_cache()
    published = {v: read_tree(fs, f"{root}/m/{v}") for v in (1, 2, 4)}
    records = {v: fs.cat_file(f"{root}/m/.releases/{v}.json") for v in (1, 2)}
    return {"fs": fs, "root": root, "published": published, "records": records}


EXPECTED = {("staging", "job-2"), ("staging", "job-3"), ("staging", "job-4"), ("staging", "job-5"),
            ("staging", "job-6"), ("draft", "job-2"), ("version directory", "m/3"), ("claim", "m/3"),
            ("claim", "m/6"), ("version directory", "m/9")}


def _names(survey, root) -> set[tuple[str, str]]:
    out = set()
    for item in survey.garbage:
        rel = item.path[len(root) + 1:]
        if item.kind in ("staging", "draft"):
            rel = rel.rsplit("/", 1)[-1].removesuffix(".json")
        elif item.kind == "claim":
            rel = rel.replace("/.claims/", "/").removesuffix(".json")
        out.add((item.kind, rel))
    return out


def _assert_untouched(registry, state: dict) -> None:
    fs, root = state["fs"], state["root"]
    for version, tree in state["published"].items():
        assert read_tree(fs, f"{root}/m/{version}") == tree, f"version {version} changed"
    for version, record in state["records"].items():
        assert fs.cat_file(f"{root}/m/.releases/{version}.json") == record
        assert registry.verify_version("m", version) == []
    assert registry.release_state("m", 4).state == UNRECORDED


def test_gc_lists_exactly_the_leftovers_and_removes_them(registry_target, tmp_path):
    state = litter(registry_target, tmp_path)
    registry = registry_target.registry()
    young = find_garbage(registry, older_than=3600)
    # only leftovers of a job that committed are garbage whatever their age
    assert _names(young, state["root"]) == {("staging", "job-2"), ("draft", "job-2")}
    survey = find_garbage(registry, older_than=0)
    expected = EXPECTED | ({("temp file", "m/.releases/.1.json.tmp-0123456789ab")}
                           if registry_target.kind == "local" else set())
    assert _names(survey, state["root"]) == expected
    assert [line for line in survey.attention if "m/4: program file present but no release record" in line]
    collect(registry, survey)
    _assert_untouched(registry, state)
    assert find_garbage(registry, older_than=0).garbage == []
    fs, root = state["fs"], state["root"]
    assert sorted(read_tree(fs, f"{root}/.staging")) == [".drafts/job-4.json"]  # what finishes version 4
    assert sorted(read_tree(fs, f"{root}/m/.claims")) == ["1.json", "2.json", "4.json"]
    # the unrecorded version is finished by a rerun of its job, from what gc left
    rerun = registry.publish(str(make_export(tmp_path / "e4", seed=4, big=4000)), "m", VersionPolicy.explicit(4),
                             INFO, "job-4")
    assert rerun.version == 4 and registry.release_state("m", 4).state == PUBLISHED


GC_CHILD = r"""
import json, os, signal, sys
from tf_bigexport.storage import Registry
from tf_bigexport.storage.gc import collect, find_garbage
a = json.loads(sys.argv[1])
registry = Registry(a["uri"], storage_options=a["options"])
collect(registry, find_garbage(registry, 0), step=lambda item: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_gc_killed_after_every_removal_converges(registry_target, tmp_path):
    """Each gc process is SIGKILLed right after its first removal; the next one goes on from there."""
    state = litter(registry_target, tmp_path)
    registry = registry_target.registry()
    env = dict(os.environ, PYTHONPATH=str(REPO), GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    args = json.dumps({"uri": registry_target.uri, "options": registry_target.storage_options})
    total = len(find_garbage(registry, 0).garbage)
    kills = 0
    while find_garbage(registry, 0).garbage:
        assert kills <= total, "gc does not converge"
        child = subprocess.run([sys.executable, "-c", GC_CHILD, args], env=env, capture_output=True, timeout=120)
        assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
        kills += 1
        _assert_untouched(registry, state)
    assert kills == total
    report(f"gc_kills_{registry_target.kind}", {"backend": registry_target.kind, "items": total, "kills": kills,
                                                "published_changed": 0, "left_after_rerun": 0})


def test_gc_refuses_a_registry_it_cannot_fully_read(registry_target, tmp_path, capsys):
    state = litter(registry_target, tmp_path)
    fs, root = state["fs"], state["root"]
    fs.pipe_file(f"{root}/m/.claims/6.json", b"[]")
    fs.invalidate_cache()
    before = read_tree(fs, root)
    options = json.dumps(registry_target.storage_options)
    os.environ["TF_BIGEXPORT_STORAGE_OPTIONS"] = options
    try:
        code = cli.main(["gc", registry_target.uri, "--older-than", "0", "--apply"])
    finally:
        del os.environ["TF_BIGEXPORT_STORAGE_OPTIONS"]
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert f"gc: refusing to run: cannot read all of {registry_target.uri}" in err
    assert f"{registry_target.uri}/m/.claims/6.json: damaged claim" in err
    assert read_tree(fs, root) == before


def test_gc_command_lists_then_applies_and_cleans_old_work_directories(tmp_path, capsys):
    from tf_bigexport.transforms.save_receipt import RECEIPT
    registry = tmp_path / "reg"
    for version, step in ((1, None), (2, "claimed")):
        def hook(name, step=step):
            if name == step:
                raise Stop(step)
        try:
            from tf_bigexport.storage import Registry
            Registry(str(registry), step_hook=hook).publish(
                str(make_export(tmp_path / f"e{version}", seed=version)), "m", VersionPolicy.explicit(version),
                INFO, f"job-{version}")
        except Stop:
            pass
    work = tmp_path / "work"
    killed = work / "20260101T000000Z-abc123" / "m"
    killed.mkdir(parents=True)
    (killed / RECEIPT).write_text("m.run 0\n")
    (work / "not-a-run").mkdir()
    (work / "not-a-run" / "keep.txt").write_text("someone else's")
    old = time.time() - 30 * 86400
    for path in [killed / RECEIPT, killed, killed.parent, work / "not-a-run" / "keep.txt"]:
        os.utime(path, (old, old))

    assert cli.main(["gc", str(registry), "--older-than", "0", "--work-root", str(work)]) == cli.EXIT_OK
    listed = capsys.readouterr().out
    assert f"would remove claim {registry}/m/.claims/2.json: job job-2 never committed" in listed
    assert f"would remove staging {registry}/.staging/job-2" in listed
    assert f"would remove work directory {killed.parent}" in listed and "not-a-run" not in listed
    assert "nothing removed (add --apply to remove them)" in listed
    assert (registry / "m" / ".claims" / "2.json").exists() and killed.exists()

    assert cli.main(["gc", str(registry), "--older-than", "0", "--work-root", str(work), "--apply"]) == cli.EXIT_OK
    assert "removed 3 item(s)" in capsys.readouterr().out
    assert not (registry / "m" / ".claims" / "2.json").exists() and not killed.parent.exists()
    assert (work / "not-a-run" / "keep.txt").exists()
    assert sorted(p.name for p in (registry / "m").iterdir()) == [".claims", ".releases", "1", "index.json"]
