"""A run from the user's side: checks before any work (preflight), factories
in their own process (time-boxed, crash-isolated, found where the user keeps
them), and reruns with the same --run_id that resume instead of redoing."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.export import run_export
from tf_bigexport.pipeline.jobs import load_jobs_file

SIGNATURES = {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 8]}]}
FACTORIES = textwrap.dedent("""\
    import ctypes, os, time

    def good(scale=1.0):
        import tensorflow as tf

        class Model(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.Variable(tf.ones([8, 2]) * scale)

            def __call__(self, x):
                return {"y": tf.matmul(x, self.w)}
        return Model()

    def hang():
        time.sleep(3600)

    def exits():
        os._exit(3)

    def segfault():
        ctypes.string_at(0)
    """)


def jobs_file(directory, jobs, registry) -> str:
    path = os.path.join(directory, "jobs.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"registry": str(registry), "jobs": jobs}, f)
    return path


def job(name, factory, **fields):
    return {"name": name, "factory": factory, "signatures": SIGNATURES,
            "sample_inputs": {"serving_default": {"generate": {"seed": 1, "batch": 2}}}, **fields}


@pytest.fixture
def project(tmp_path):
    """A user's project: model code next to the jobs file, nothing installed."""
    models = tmp_path / "project"
    models.mkdir()
    (models / "user_models.py").write_text(FACTORIES)
    return models


def test_factories_that_hang_or_crash_fail_their_own_job_only(project, tmp_path):
    path = jobs_file(project, [job("good", "user_models:good"),
                               job("hang", "user_models:hang", trace_timeout=3),
                               job("exits", "user_models:exits"),
                               job("segfault", "user_models:segfault")], tmp_path / "reg")
    outcomes = {o["model_name"]: o for o in run_export(load_jobs_file(path), ["--work_dir", str(tmp_path / "w")])}
    assert outcomes["good"]["status"] == "published"
    failed = {name: (o["stage"], o["error"]) for name, o in outcomes.items() if name != "good"}
    assert failed["hang"][0] == "trace"
    assert failed["hang"][1].startswith("trace_timeout: building and tracing the model took longer than 3 s")
    assert "killed while building the model" in failed["hang"][1]
    assert failed["exits"] == ("trace", failed["exits"][1])
    assert failed["exits"][1].startswith("the process exited with status 3 while building the model")
    assert failed["segfault"][0] == "trace"
    assert failed["segfault"][1].startswith("the process died with SIGSEGV while building the model")
    assert "Fatal Python error: Segmentation fault" in failed["segfault"][1]
    assert f'File "{project}/user_models.py", line 22 in segfault' in failed["segfault"][1]
    assert sorted(os.listdir(tmp_path / "reg")) == [".staging", "good"]


def test_factories_resolve_from_the_jobs_file_then_python_path_then_the_current_directory(project, tmp_path,
                                                                                         monkeypatch, capsys):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra_models.py").write_text("from user_models import good\n")
    # the same module name in the current directory loses to the jobs file's directory
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "user_models.py").write_text("def good():\n    raise RuntimeError('the copy in the current directory')\n")
    (cwd / "cwd_models.py").write_text("from user_models import good\n")
    monkeypatch.chdir(cwd)
    path = jobs_file(project, [job("a", "user_models:good"), job("b", "extra_models:good"),
                               job("c", "cwd_models:good")], tmp_path / "reg")
    code = cli.main(["run", "--jobs", path, "--work_dir", str(tmp_path / "w"), "--python-path", str(extra)])
    assert code == cli.EXIT_OK, capsys.readouterr()
    missing = jobs_file(project, [job("d", "nowhere_models:good")], tmp_path / "reg")
    assert cli.main(["run", "--jobs", missing, "--python_path", str(extra)]) == cli.EXIT_USAGE
    assert (f"preflight: job 'd': field 'factory': factory 'nowhere_models:good': no module named 'nowhere_models' "
            f"(looked in {project}, {extra}, the installed packages, {cwd})") in capsys.readouterr().err


def test_preflight_names_what_holds_an_explicit_version(project, tmp_path, capsys):
    registry = tmp_path / "reg"
    first = jobs_file(project, [job("m", "user_models:good", version=7)], registry)
    assert cli.main(["run", "--jobs", first, "--run_id", "first", "--work_dir", str(tmp_path / "w1")]) == cli.EXIT_OK
    from tf_bigexport import storage
    storage.Registry(str(registry)).publication("m", "m.someone-else", storage.Manifest([])).claim(
        storage.VersionPolicy.explicit(8))
    capsys.readouterr()

    second = jobs_file(project, [job("m", "user_models:good", version=7)], registry)
    assert cli.main(["run", "--jobs", second, "--run_id", "second"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert (f"preflight: job 'm' field 'version': version 7 of 'm' is taken: published by job 'm.first' "
            f"(release record {registry}/m/.releases/7.json); use another version or 'next'") in err
    third = jobs_file(project, [job("m", "user_models:good", version=8)], registry)
    assert cli.main(["run", "--jobs", third, "--run_id", "third"]) == cli.EXIT_USAGE
    assert ("preflight: job 'm' field 'version': version 8 of 'm' is taken: claimed by job 'm.someone-else', "
            "which has not committed it") in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "w2")


def test_a_rerun_reports_published_jobs_without_work_and_reuses_checked_saves(project, tmp_path, capsys):
    from tf_bigexport import storage
    from tf_bigexport.pipeline.graph import to_task
    from tf_bigexport.transforms import fingerprint, stage, verify
    from tf_bigexport.transforms.trace_and_save import trace_and_save

    registry, work = tmp_path / "reg", tmp_path / "work"
    path = jobs_file(project, [job("ok", "user_models:good"),
                               job("late", "user_models:good", factory_kwargs={"scale": 2.0})], registry)
    jobs = {j.name: j for j in load_jobs_file(path)}
    # The first attempt of run "nightly": `ok` published, `late` killed after its verify stage.
    assert cli.main(["run", "--jobs", jobs_file(tmp_path, [job("ok", "user_models:good")], registry),
                     "--run_id", "nightly", "--work_dir", str(work), "--python_path", str(project)]) == cli.EXIT_OK
    task = to_task(jobs["late"], work_root=str(work), run_id="nightly")
    verify.verify(stage.stage(fingerprint.fingerprint(trace_and_save(task))))
    receipt = json.loads((work / "late" / "saved_model.receipt.json").read_text())
    assert receipt["verified"] and receipt["manifest"]
    capsys.readouterr()

    code = cli.main(["run", "--jobs", path, "--run_id", "nightly", "--work_dir", str(work)])
    rerun = capsys.readouterr()
    assert code == cli.EXIT_OK, rerun
    assert "job=ok already published version 1 by this run id (nightly); nothing to do" in rerun.err
    assert "job=ok stage=" not in rerun.err  # no stage ran for it
    assert "job=late reusing the save in" in rerun.err and "reload check passed before)" in rerun.err
    assert "job=late reload check passed before on these files; not repeated" in rerun.err
    assert not (work / "late").exists()  # published now: its scratch is gone
    reg = storage.Registry(str(registry))
    assert reg.list_versions("ok") == [1] and reg.list_versions("late") == [1]
    assert reg.verify_version("late", 1) == []
    assert reg.read_release_record("late", 1).job_key == "late.nightly"
