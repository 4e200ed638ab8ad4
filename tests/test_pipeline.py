"""The export pipeline on the DirectRunner against the GCS emulator, the CLI on
what it published, retries of single stages, and Dataflow construction."""
from __future__ import annotations

import json
import os
import tarfile
import uuid

import numpy as np
import pytest

from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.export import construct, run_export
from tf_bigexport.pipeline.jobs import parse_jobs
from tf_bigexport.pipeline.summary import format_summary

SPLIT_KWARGS = {"count": 4, "size": 128, "seed": 7}  # 4 x 64 KiB constants
TESTS = os.path.dirname(os.path.abspath(__file__))  # factories of these tests: --python_path


def broken_model():
    """A factory that fails the way real ones do: while building."""
    raise RuntimeError("weights file is corrupted")


def jobs_document(registry: str) -> dict:
    return {"registry": registry, "jobs": [
        {"name": "tokens", "factory": "tf_bigexport.pipeline.demo_models:vocabulary_module",
         "signatures": {
             "serving_default": [{"name": "tokens", "dtype": "string", "shape": [None]}],
             "score": {"method": "score", "inputs": [{"name": "tokens", "dtype": "string", "shape": [None, None]}]}},
         "sample_inputs": {"serving_default": {"tokens": ["token2", "nope"]},
                           "score": {"generate": {"seed": 1, "batch": 2}}},
         "version": 3},
        {"name": "split", "factory": "tf_bigexport.pipeline.demo_models:split_constants", "factory_kwargs": SPLIT_KWARGS,
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 128]}]},
         "sample_inputs": {"serving_default": {"generate": {"seed": 0, "batch": 2}}},
         "split_threshold": 48 * 1024, "format": "image"},
        {"name": "broken", "factory": "test_pipeline:broken_model",
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 2]}]}},
    ]}


@pytest.fixture(scope="module")
def exported(gcs_emulator, tmp_path_factory):
    registry = gcs_emulator.uri(f"pipeline-{uuid.uuid4().hex[:8]}")
    options = dict(gcs_emulator.storage_options)
    jobs = parse_jobs(jobs_document(registry), source="jobs.yaml")
    work = tmp_path_factory.mktemp("work")
    counters: dict[str, int] = {}
    outcomes = run_export(jobs, ["--storage_options", json.dumps(options), "--work_dir", str(work),
                                 "--python_path", TESTS], counters)
    return {"registry": registry, "options": options, "work": work, "counters": counters,
            "outcomes": {o["model_name"]: o for o in outcomes}}


def registry_of(exported):
    from tf_bigexport import storage
    return storage.Registry(exported["registry"], storage_options=exported["options"])


def test_good_jobs_published_and_verifiable(exported):
    outcomes = exported["outcomes"]
    assert outcomes["tokens"]["status"] == "published" and outcomes["tokens"]["version"] == 3
    assert outcomes["split"]["status"] == "published" and outcomes["split"]["version"] == 1
    assert outcomes["split"]["proto_file"] == "saved_model.cpb" and outcomes["split"]["chunks"] > 2
    registry = registry_of(exported)
    for name in ("tokens", "split"):
        version = outcomes[name]["version"]
        assert registry.list_versions(name) == [version]
        assert registry.verify_version(name, version) == []
        record = registry.read_release_record(name, version)
        assert record.fingerprint["saved_model_checksum"] == outcomes[name]["fingerprint"]["saved_model_checksum"]
        assert set(record.signatures) >= {"serving_default"}
        assert record.extra["job_spec"]["name"] == name
    counters = exported["counters"]
    published_files = sum(outcomes[n]["files"] for n in ("tokens", "split"))
    assert counters["files_published"] == published_files
    assert counters["bytes_written"] == counters["bytes_staged"] == sum(outcomes[n]["size"] for n in ("tokens", "split"))
    assert counters["chunks"] == outcomes["split"]["chunks"] + 1  # tokens is a plain .pb: one chunk
    assert counters["failed_jobs"] == 1 and counters.get("verification_failures", 0) == 0
    # Nothing left in staging once committed.
    fs = registry.filesystem
    staging = exported["registry"].split("://", 1)[1] + "/.staging"
    assert not fs.exists(staging) or fs.find(staging) == []


def test_broken_job_reported_by_name_and_stage_and_not_published(exported):
    broken = exported["outcomes"]["broken"]
    assert broken["status"] == "failed" and broken["stage"] == "trace"
    assert "RuntimeError: weights file is corrupted" in broken["error"]
    summary = format_summary(list(exported["outcomes"].values()))
    assert ("job 'broken' failed in stage 'trace': FactoryError: field 'factory': 'test_pipeline:broken_model' "
            "raised RuntimeError: weights file is corrupted") in summary
    assert "FAILED in trace" in summary
    registry = registry_of(exported)
    assert registry.list_versions("broken") == []
    root = exported["registry"].split("://", 1)[1]
    assert not registry.filesystem.exists(f"{root}/broken")


def test_inspect_published_cpb(exported, monkeypatch, capsys):
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(exported["options"]))
    uri = f"{exported['registry']}/split/1"
    assert cli.main(["inspect", uri, "--json", "--chunks"]) == cli.EXIT_OK
    desc = json.loads(capsys.readouterr().out)
    assert desc["proto_file"] == "saved_model.cpb"
    [meta_graph] = desc["meta_graphs"]
    assert meta_graph["tags"] == ["serve"]
    sig = meta_graph["signatures"]["serving_default"]
    # as the release record has them
    record = registry_of(exported).read_release_record("split", 1)
    assert sig["inputs"]["x"]["dtype"] == "float32" and sig["inputs"]["x"]["shape"] == [None, 128]
    assert {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in sig["inputs"].items()} == \
        record.signatures["serving_default"]["inputs"]
    assert sig["outputs"]["features"]["shape"] == [None, 128]
    assert len(desc["chunk_layout"]["chunks"]) == exported["outcomes"]["split"]["chunks"]
    assert any("tensor_content" in f["field"] for f in desc["chunk_layout"]["chunked_fields"])
    assert desc["fingerprint"] == {k: v for k, v in exported["outcomes"]["split"]["fingerprint"].items()
                                   if k != "singleprint"}
    assert cli.main(["inspect", uri]) == cli.EXIT_OK
    text = capsys.readouterr().out
    assert "signature_def['serving_default']" in text and "Chunk layout:" in text


def test_call_published_cpb_matches_the_model(exported, monkeypatch, tmp_path, capsys):
    import tensorflow as tf

    from tf_bigexport.pipeline.demo_models import split_constants
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(exported["options"]))
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 256, dtype=np.float32).reshape(2, 128))
    code = cli.main(["call", f"{exported['registry']}/split/1", "--signature", "serving_default",
                     "--inputs", f"x={tmp_path}/x.npy", "--outdir", str(tmp_path / "out")])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    got = np.load(tmp_path / "out" / "features.npy")
    expected = split_constants(**SPLIT_KWARGS)(tf.constant(np.load(tmp_path / "x.npy")))["features"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    code = cli.main(["call", f"{exported['registry']}/tokens/3", "--signature", "nope", "--input-exprs", "x=[1]"])
    assert code == cli.EXIT_USAGE
    assert "no signature 'nope'; the model has ['score', 'serving_default']" in capsys.readouterr().err


def test_verify_then_detects_a_corrupted_chunk(exported, monkeypatch, capsys):
    # Last test of the module: it damages the published split model.
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(exported["options"]))
    uri = f"{exported['registry']}/split/1"
    assert cli.main(["verify", uri]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "riegeli saved_model.cpb: ok" in out and "tensorflow fingerprint: ok" in out

    fs = registry_of(exported).filesystem
    path = uri.split("://", 1)[1] + "/saved_model.cpb"
    data = bytearray(fs.cat_file(path))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    assert cli.main(["verify", uri]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "saved_model.cpb:" in err
    assert "problem(s)" in err


# ---- stages under retry (called directly, local registry) ------------------------

def test_stages_are_idempotent_when_retried(tmp_path):
    from tf_bigexport.pipeline.graph import to_task
    from tf_bigexport.transforms import commit, fingerprint, save_receipt, stage, verify
    from tf_bigexport.transforms.trace_and_save import trace_and_save
    [job] = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [jobs_document("")["jobs"][1]]})
    task = to_task(job, work_root=str(tmp_path / "work"), run_id="retry")
    saved = fingerprint.fingerprint(trace_and_save(task))
    assert saved.reused is None and saved.tensorflow_version
    # no temporary directory or request left; the receipt says which job the save belongs to
    assert sorted(os.listdir(task.work_dir)) == ["saved_model", "saved_model.golden.npz", "saved_model.receipt.json",
                                                 "trace_and_save.log"]
    again = trace_and_save(task)  # a retried bundle: the checked save is reused, no new process
    assert again.reused == "saved" and again.saved_dir == saved.saved_dir
    assert again.manifest.by_path() == saved.manifest.by_path() and again.golden_npz == saved.golden_npz
    state = stage.stage(fingerprint.fingerprint(again))
    assert stage.stage(state).staging_uri == state.staging_uri
    state = verify.verify(state)
    assert save_receipt.read(task.work_dir).verified
    assert trace_and_save(task).reused == "verified"
    first = commit.commit(state)
    second = commit.commit(state)
    assert first.version == second.version == 1
    assert first.release_record == second.release_record
    assert not os.path.exists(task.work_dir)  # published: the job's scratch is gone


def test_a_changed_save_is_not_reused(tmp_path):
    """Work-dir contents are checked against the receipt, not trusted."""
    from tf_bigexport.pipeline.graph import to_task
    from tf_bigexport.transforms import fingerprint
    from tf_bigexport.transforms.trace_and_save import trace_and_save
    [job] = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [jobs_document("")["jobs"][1]]})
    task = to_task(job, work_root=str(tmp_path / "work"), run_id="tamper")
    first = fingerprint.fingerprint(trace_and_save(task))
    shard = next(e.path for e in first.manifest.files if e.path.startswith("variables/variables.data"))
    with open(os.path.join(first.saved_dir, shard), "r+b") as f:
        f.write(b"\xff")  # same size, other bytes
    redone = trace_and_save(task)
    assert redone.reused is None  # traced and saved again, in a fresh process
    assert fingerprint.fingerprint(redone).manifest.by_path()[shard].size == first.manifest.by_path()[shard].size


def test_verification_rejects_changed_golden_outputs(tmp_path):
    import dataclasses

    from tf_bigexport.pipeline.graph import to_task
    from tf_bigexport.transforms import fingerprint, stage, trace, verify
    from tf_bigexport.transforms.trace_and_save import trace_and_save
    [job] = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [jobs_document("")["jobs"][1]]})
    task = to_task(job, work_root=str(tmp_path / "work"), run_id="golden")
    state = stage.stage(fingerprint.fingerprint(trace_and_save(task)))
    golden = trace.npz_to_arrays(state.golden_npz)
    golden["serving_default/features"] = golden["serving_default/features"] + 1e-3
    tampered = dataclasses.replace(state, golden_npz=trace.arrays_to_npz(golden))
    assert os.path.isdir(state.staging_uri)
    with pytest.raises(verify.VerificationFailed, match="serving_default/features: differs beyond rtol"):
        verify.verify(tampered)
    assert not os.path.exists(state.staging_uri)  # rejected bytes are not kept in the registry


# ---- construction only ----------------------------------------------------------

def test_graph_reads_like_the_data_flow():
    jobs = parse_jobs(jobs_document("gs://bucket/models"), source="jobs.yaml")
    pipeline, _ = construct(jobs, ["--work_dir", "/tmp/unused"])
    proto = pipeline.to_runner_api()
    labels = {t.unique_name for t in proto.components.transforms.values()}
    stages = ["ReadJobs", "TraceAndSave", "Fingerprint", "Stage", "Verify", "Commit"]
    for name in stages:
        assert f"ExportModels/{name}" in labels
    assert "ExportModels/Verify/ChecksumStagedObject" in labels
    assert "WriteOutcomes/WriteOutcomeFiles" in labels
    root = next(t for t in proto.components.transforms.values() if t.unique_name == "ExportModels")
    order = [proto.components.transforms[s].unique_name.split("/")[-1] for s in root.subtransforms]
    assert [n for n in order if n in stages] == stages


def test_constructs_for_dataflow_without_submitting():
    from apache_beam.options.pipeline_options import SetupOptions, StandardOptions
    from tf_bigexport.pipeline.options import project_setup_file
    jobs = parse_jobs(jobs_document("gs://bucket/models"), source="jobs.yaml")
    # --dry_run: Beam's own switch that skips the GCS checks needing credentials and network.
    pipeline, export = construct(jobs, ["--runner", "DataflowRunner", "--project", "dummy-project",
                                        "--region", "us-central1", "--temp_location", "gs://dummy-bucket/tmp",
                                        "--", "--dry_run", "True"])
    options = pipeline.options
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert type(pipeline.runner).__name__ == "DataflowRunner"
    assert options.view_as(SetupOptions).setup_file == project_setup_file()
    assert export.outcomes_dir.startswith("gs://dummy-bucket/tmp/tf-bigexport/")
    assert export.run_id in export.outcomes_dir
    assert pipeline.to_runner_api().components.transforms  # the graph serializes for submission


def test_worker_package_builds_with_beams_stager(tmp_path):
    """Dataflow workers install the sdist that Beam builds from --setup_file; build it here."""
    from apache_beam.runners.portability.stager import Stager
    from tf_bigexport.pipeline.options import project_setup_file
    sdist = Stager._build_setup_package(project_setup_file(), str(tmp_path))
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for required in ("setup.py", "pyproject.toml", "pipeline/graph.py", "transforms/verify.py",
                     "storage/registry.py", "imageformat/_highwayhash.c", "imageformat/proto/chunk_pb2.py"):
        assert required in names


def _bundled_setuptools_python() -> str | None:
    """This Python's own ensurepip setuptools (65.5 on 3.10/3.11), the oldest a
    user's fresh venv has; None where Python bundles none (3.12 on)."""
    import ensurepip
    bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
    return next((os.path.join(bundled, n) for n in sorted(os.listdir(bundled))
                 if n.startswith("setuptools-")), None)


def test_worker_package_builds_with_a_fresh_venvs_setuptools(tmp_path):
    """Beam's stager falls back to `python setup.py sdist` in the launching
    environment; a fresh venv's setuptools must accept our pyproject."""
    import shutil
    import subprocess
    import sys

    from tf_bigexport.pipeline.options import project_setup_file
    wheel = _bundled_setuptools_python()
    if wheel is None:
        pytest.skip(f"Python {sys.version_info[:2]} bundles no setuptools for fresh venvs")
    source = os.path.dirname(project_setup_file())
    tree = tmp_path / "tree"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "registry", "*.egg-info", "__pycache__", "*.so"))
    # The wheel itself is importable: setup.py runs under exactly that setuptools.
    built = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {wheel!r}); sys.argv = ['setup.py', 'sdist', '--dist-dir', "
         f"{str(tmp_path / 'dist')!r}]; import setuptools; assert setuptools.__file__.startswith({wheel!r}); "
         "exec(compile(open('setup.py').read(), 'setup.py', 'exec'))"],
        cwd=tree, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    assert os.listdir(tmp_path / "dist") == ["tf-bigexport-0.1.0.tar.gz"]


# ---- trace: factories and checkpoints ---------------------------------------------

def _task_for(tmp_path, **job_fields):
    from tf_bigexport.pipeline.graph import to_task
    spec = {"name": "m", "signatures": {"serving_default": [{"name": "tokens", "dtype": "string", "shape": [None]}]}}
    spec.update(job_fields)
    [job] = parse_jobs({"registry": str(tmp_path / "reg"), "jobs": [spec]}, base_dir=str(tmp_path))
    return to_task(job, work_root=str(tmp_path / "work"), run_id="t")


def test_checkpoint_is_restored_before_tracing(tmp_path):
    import tensorflow as tf

    from tf_bigexport.pipeline.demo_models import vocabulary_module
    from tf_bigexport.transforms import trace
    from tf_bigexport.transforms.trace_and_save import trace_and_save
    trained = vocabulary_module()
    trained.weight.assign(4.0)
    prefix = tf.train.Checkpoint(model=trained).write(str(tmp_path / "ckpt" / "model"))
    task = _task_for(tmp_path, factory="tf_bigexport.pipeline.demo_models:vocabulary_module",
                     checkpoint=os.path.relpath(prefix, tmp_path),
                     signatures={"score": {"method": "score", "inputs": [
                         {"name": "tokens", "dtype": "string", "shape": [None, None]}]}},
                     sample_inputs={"score": {"tokens": [["token1", "token2", "nope"]]}})
    state = trace_and_save(task)
    assert trace.npz_to_arrays(state.golden_npz)["score/score"].tolist() == [8.0]  # 2 known tokens x 4.0


@pytest.mark.parametrize("factory, message", [
    ("builtins:dict", "returned dict, expected a tf.Module or Keras model"),
    ("tf_bigexport.pipeline.demo_models:no_such_model", "has no attribute 'no_such_model'"),
    ("no_such_package.models:build", "cannot import module 'no_such_package.models'"),
])
def test_bad_factories_fail_with_the_reason(tmp_path, factory, message):
    from tf_bigexport.transforms.child_process import ChildFailed
    from tf_bigexport.transforms.trace_and_save import trace_and_save
    with pytest.raises(ChildFailed, match=message) as info:
        trace_and_save(_task_for(tmp_path, factory=factory))
    assert info.value.stage == "trace"


@pytest.mark.slow
def test_model_past_2gib_is_exported_split_and_verified(tmp_path):
    """The demo's --large job (three 800 MB constants): about 3 minutes and 12 GiB of RAM."""
    from tf_bigexport.pipeline.demo_models import demo_jobs
    document = demo_jobs(str(tmp_path / "reg"), large=True)
    # format: image (the default, auto, publishes the servable form: tests/test_large_servable.py)
    document["jobs"] = [dict(j, format="image") for j in document["jobs"] if j["name"] == "large"]
    jobs = parse_jobs(document, source="demo")
    [outcome] = run_export(jobs, ["--work_dir", str(tmp_path / "work")])
    assert outcome["status"] == "published", outcome
    assert outcome["proto_file"] == "saved_model.cpb" and outcome["size"] > 2**31
    assert cli.main(["verify", str(tmp_path / "reg" / "large" / "1")]) == cli.EXIT_OK
