"""Registry adapters against real stores: the JSON index in the registry and an
MLflow Model Registry backed by sqlite; the commit stage's registering hook and
the `register` command that retries a failed registration."""
from __future__ import annotations

import json
import os

import pytest

from tf_bigexport import storage
from tf_bigexport.pipeline import cli
from tf_bigexport.registries import (ALREADY_REGISTERED, FAILED, REGISTERED, JsonIndexAdapter, ModelRegistryAdapter,
                        RegistrationConfig, register_everywhere)
from tf_bigexport.registries.mlflow_registry import CHECKSUM_TAG, SINGLEPRINT_TAG, URI_TAG, VERSION_TAG, MlflowAdapter

FINGERPRINT = {"saved_model_checksum": "1234", "graph_def_program_hash": "1", "signature_def_hash": "2",
               "saved_object_graph_hash": "3", "checkpoint_hash": "4", "singleprint": "1/2/3/4"}


def publish_files(registry: storage.Registry, tmp_path, model: str, job_key: str, payload: bytes = b"graph",
                  fingerprint: dict | None = None) -> storage.ReleaseRecord:
    """A published version made of plain files: registries only read the release record."""
    src = tmp_path / f"src-{job_key}"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(payload)
    (src / "variables" / "variables.index").write_bytes(b"index")
    info = {"fingerprint": fingerprint or FINGERPRINT, "signatures": {"serving_default": {}},
            "tensorflow_version": "2.21.0", "job_spec_sha256": "ab" * 32, "tags": {"team": "vision"}}
    return registry.publish(str(src), model, storage.VersionPolicy.next_integer(), info, job_key)


@pytest.fixture
def published(tmp_path):
    registry = storage.Registry(str(tmp_path / "registry"))
    return registry, publish_files(registry, tmp_path, "resnet", "resnet.run1")


def sqlite_uri(path) -> str:
    return f"sqlite:///{path}"


def mlflow_versions(tracking_uri: str, name: str):
    from mlflow import MlflowClient
    return list(MlflowClient(tracking_uri=tracking_uri).search_model_versions(f"name='{name}'"))


def test_adapters_share_one_interface():
    assert isinstance(JsonIndexAdapter(object()), ModelRegistryAdapter)
    assert isinstance(MlflowAdapter("sqlite:///unused.db"), ModelRegistryAdapter)


def test_json_index_lists_the_version_and_repairs_a_lost_index(published):
    registry, record = published
    [result] = register_everywhere(record, RegistrationConfig().adapters(registry))
    assert (result.registry, result.status) == ("index", ALREADY_REGISTERED)  # commit wrote it
    # A crash between the release record and the index leaves no index.json behind.
    index_path = os.path.join(registry.uri, "resnet", "index.json")
    os.remove(index_path)
    [result] = register_everywhere(record, RegistrationConfig().adapters(registry))
    assert result.status == REGISTERED and result.reference == index_path
    with open(index_path) as f:
        index = json.load(f)
    assert index["latest"] == 1
    assert [(v["version"], v["fingerprint"]) for v in index["versions"]] == [(1, FINGERPRINT)]


def test_mlflow_registers_once_with_the_records_identity(published, tmp_path):
    registry, record = published
    tracking = sqlite_uri(tmp_path / "mlflow.db")
    adapters = RegistrationConfig(mlflow_tracking_uri=tracking).adapters(registry)
    first = register_everywhere(record, adapters)
    again = register_everywhere(record, RegistrationConfig(mlflow_tracking_uri=tracking).adapters(registry))
    assert [(r.registry, r.status) for r in first] == [("index", ALREADY_REGISTERED), ("mlflow", REGISTERED)]
    assert [(r.registry, r.status) for r in again] == [("index", ALREADY_REGISTERED), ("mlflow", ALREADY_REGISTERED)]
    assert first[1].reference == again[1].reference == "models:/resnet/1"
    [version] = mlflow_versions(tracking, "resnet")
    assert version.source == record.uri
    assert version.tags[URI_TAG] == record.uri
    assert version.tags[VERSION_TAG] == "1"
    assert version.tags[SINGLEPRINT_TAG] == "1/2/3/4"
    assert version.tags[CHECKSUM_TAG] == "1234"
    assert version.tags["tf_bigexport.release_record"] == f"{registry.uri}/resnet/.releases/1.json"
    assert version.tags["tf_bigexport.tag.team"] == "vision"


def test_mlflow_versions_follow_published_versions(published, tmp_path):
    registry, first = published
    second = publish_files(registry, tmp_path, "resnet", "resnet.run2", payload=b"graph v2",
                           fingerprint=dict(FINGERPRINT, saved_model_checksum="5678"))
    adapter = MlflowAdapter(sqlite_uri(tmp_path / "mlflow.db"))
    assert [adapter.register(r).reference for r in (second, first)] == ["models:/resnet/1", "models:/resnet/2"]
    tags = {v.tags[VERSION_TAG]: v.tags[CHECKSUM_TAG] for v in mlflow_versions(adapter.tracking_uri, "resnet")}
    assert tags == {"1": "1234", "2": "5678"}


def test_mlflow_refuses_a_different_export_under_the_same_uri(published, tmp_path):
    registry, record = published
    adapter = MlflowAdapter(sqlite_uri(tmp_path / "mlflow.db"))
    adapter.register(record)
    record.fingerprint = dict(FINGERPRINT, saved_model_checksum="999")  # e.g. a registry wiped and re-published
    [result] = register_everywhere(record, [adapter])
    assert result.status == FAILED
    assert "saved_model_checksum 1234, not 999" in result.error
    assert len(mlflow_versions(adapter.tracking_uri, "resnet")) == 1


def test_register_command_retries_after_a_registry_outage(published, tmp_path, capsys):
    registry, record = published
    # The MLflow store cannot be opened: its directory's name is taken by a file.
    blocker = tmp_path / "mlflow-store"
    blocker.write_text("not a directory")
    tracking = sqlite_uri(blocker / "mlflow.db")
    uri = record.uri
    assert cli.main(["register", uri, "--mlflow_tracking_uri", tracking]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{uri}: mlflow: FAILED" in err
    assert registry.verify_version("resnet", 1) == []  # still published, untouched
    blocker.unlink()
    assert cli.main(["register", uri, "--mlflow-tracking-uri", tracking]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"{uri}: mlflow: registered as models:/resnet/1" in out
    assert cli.main(["register", uri, "--mlflow_tracking_uri", tracking]) == cli.EXIT_OK
    assert f"{uri}: mlflow: already-registered as models:/resnet/1" in capsys.readouterr().out
    assert len(mlflow_versions(tracking, "resnet")) == 1


def test_register_command_names_a_version_that_is_not_published(tmp_path, capsys):
    storage.Registry(str(tmp_path / "registry"))
    uri = f"{tmp_path}/registry/resnet/7"
    assert cli.main(["register", uri]) == cli.EXIT_FAILED
    assert "no release record (version not published)" in capsys.readouterr().err


# ---- the commit stage's hook, through the pipeline ------------------------------

def split_job(registry: str) -> dict:
    return {"registry": registry, "jobs": [
        {"name": "split", "factory": "tf_bigexport.pipeline.demo_models:split_constants",
         "factory_kwargs": {"count": 2, "size": 64, "seed": 3},
         "signatures": {"serving_default": [{"name": "x", "dtype": "float32", "shape": [None, 64]}]},
         "sample_inputs": {"serving_default": {"generate": {"seed": 0, "batch": 2}}},
         "split_threshold": 12 * 1024, "format": "image"}]}


def test_run_publishes_even_when_mlflow_fails_then_register_completes_it(tmp_path, capsys):
    import yaml
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(yaml.safe_dump(split_job(str(tmp_path / "registry"))))
    blocker = tmp_path / "mlflow-store"
    blocker.write_text("not a directory")
    tracking = sqlite_uri(blocker / "mlflow.db")
    status = cli.main(["run", "--jobs", str(jobs_file), "--work_dir", str(tmp_path / "work"),
                       "--mlflow_tracking_uri", tracking])
    out = capsys.readouterr().out
    assert status == cli.EXIT_NOT_REGISTERED, out
    uri = f"{tmp_path}/registry/split/1"
    assert "published (saved_model.cpb" in out
    assert "job 'split' registered: index: already-registered" in out and "mlflow: FAILED" in out
    assert f"retry registering with: tf-bigexport register {uri} --mlflow_tracking_uri {tracking}" in out
    assert storage.Registry(str(tmp_path / "registry")).verify_version("split", 1) == []

    blocker.unlink()
    assert cli.main(["register", uri, "--mlflow_tracking_uri", tracking]) == cli.EXIT_OK
    [version] = mlflow_versions(tracking, "split")
    record = storage.Registry(str(tmp_path / "registry")).read_release_record("split", 1)
    assert version.tags[CHECKSUM_TAG] == record.fingerprint["saved_model_checksum"]
    assert version.tags[SINGLEPRINT_TAG] == record.fingerprint["singleprint"]


# ---- TensorFlow Serving layout ---------------------------------------------------------

def serving_versions(children: list[str]) -> dict[int, str]:
    """What TF Serving's FileSystemStoragePathSource makes of a base path's children:
    the first path segment of each, kept when it parses as an int64 (safe_strto64), else skipped."""
    found = {}
    for child in {c.split("/", 1)[0] for c in children}:
        text = child.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isdigit() and -2**63 <= int(text) < 2**63:
            found[int(text)] = child
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One model published twice by the stages: a plain saved_model.pb (v1, registered in
    MLflow by the commit stage) and a split saved_model.cpb (v2, JSON index only)."""
    from tf_bigexport.pipeline.direct import export_directly
    from tf_bigexport.pipeline.jobs import parse_jobs
    root = tmp_path_factory.mktemp("serving")
    document = split_job(str(root / "registry"))
    as_pb = dict(document["jobs"][0], split_threshold=1 << 30)
    as_cpb = dict(document["jobs"][0])
    tracking = sqlite_uri(root / "mlflow.db")
    states = {}
    for run_id, job, registration in (("pb", as_pb, {"mlflow_tracking_uri": tracking}), ("cpb", as_cpb, None)):
        [spec] = parse_jobs({"registry": document["registry"], "jobs": [job]})
        states[run_id] = export_directly(spec, work_root=str(root / "work" / run_id), run_id=run_id,
                                         registration=registration)
    return {"registry": root / "registry", "states": states, "tracking": tracking}


def test_commit_stage_registers_in_mlflow_once_across_retries(served):
    from tf_bigexport.transforms import commit
    first = served["states"]["pb"]
    retried = commit.commit(first)  # Beam retrying the commit bundle after it had finished
    assert [(r["registry"], r["status"]) for r in first.registrations] == [
        ("index", ALREADY_REGISTERED), ("mlflow", REGISTERED)]
    assert [(r["registry"], r["status"]) for r in retried.registrations] == [
        ("index", ALREADY_REGISTERED), ("mlflow", ALREADY_REGISTERED)]
    assert retried.version == first.version == 1
    [version] = mlflow_versions(served["tracking"], "split")
    assert version.source == first.release_record["uri"]
    assert version.tags[CHECKSUM_TAG] == first.release_record["fingerprint"]["saved_model_checksum"]
    assert [r["registry"] for r in served["states"]["cpb"].registrations] == ["index"]


def test_published_layout_is_what_tf_serving_reads(served):
    served = served["registry"]
    model_dir = served / "split"
    children = sorted(os.listdir(model_dir))
    assert serving_versions(children) == {1: "1", 2: "2"}
    assert set(children) - {"1", "2"} == {".claims", ".releases", "index.json"}
    # Staging sits beside the models, under no model's base path.
    assert "split" in os.listdir(served) and set(os.listdir(served)) <= {".staging", "split"}
    for version, proto in (("1", "saved_model.pb"), ("2", "saved_model.cpb")):
        files = {os.path.relpath(os.path.join(d, n), model_dir / version)
                 for d, _, names in os.walk(model_dir / version) for n in names}
        assert proto in files and "fingerprint.pb" in files
        assert {"saved_model.pb", "saved_model.cpb"} & files == {proto}
        assert all(f == proto or f == "fingerprint.pb" or f.startswith(("variables/", "assets/")) for f in files), files
        assert not any(part.startswith(".") for f in files for part in f.split("/"))


def test_serving_version_parsing_skips_our_entries():
    assert serving_versions([".claims/3.json", ".releases/3.json", "index.json", ".staging", "3/saved_model.pb",
                             "10", "latest", "1.5", "v2"]) == {3: "3", 10: "10"}


def test_pb_version_loads_with_stock_tensorflow_and_cpb_needs_imageformat(served):
    served = served["registry"]
    import numpy as np
    import tensorflow as tf

    from tf_bigexport import imageformat
    x = np.ones((1, 64), np.float32)
    stock = tf.saved_model.load(str(served / "split" / "1"))
    expected = stock.signatures["serving_default"](x=tf.constant(x))["features"].numpy()
    with pytest.raises(OSError, match="SavedModel file does not exist"):
        tf.saved_model.load(str(served / "split" / "2"))
    merged = imageformat.load(str(served / "split" / "2"))
    np.testing.assert_allclose(merged.signatures["serving_default"](x=tf.constant(x))["features"].numpy(),
                               expected, rtol=1e-6)


def test_retry_command_leaves_credentials_out():
    config = RegistrationConfig(mlflow_tracking_uri="https://bot:s3cret@mlflow.example/api",
                                mlflow_registry_uri="sqlite:////var/lib/mlflow.db")
    command = config.retry_command("gs://b/models/resnet/4")
    assert command == ("tf-bigexport register gs://b/models/resnet/4 --mlflow_tracking_uri "
                       "https://mlflow.example/api --mlflow_registry_uri sqlite:////var/lib/mlflow.db")
    assert "s3cret" not in command
