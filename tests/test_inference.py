"""Batch inference on published versions: tf_bigexport.inference with Beam's RunInference.

A .cpb version published to each registry backend (local disk, the GCS and S3
emulators) runs through RunInference on the DirectRunner, plain and keyed, and
every prediction equals a direct call of the signature; the model is loaded
once per worker process however many threads run the DoFn.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that

from tf_bigexport import imageformat
from tf_bigexport.inference import SavedModelHandlerNumpy, SavedModelHandlerTensor, version_cache
from tf_bigexport.storage import VersionPolicy

sys.path.insert(0, os.path.dirname(__file__))
import tf_model_zoo  # noqa: E402

EXAMPLES = [np.array([i, i + 0.5, -i], dtype=np.float32) for i in range(10)]


def save_multi_head_cpb(export_dir: Path) -> Path:
    """Two signatures (one with two outputs), saved split into many chunks."""
    model = tf_model_zoo.MultiHead()
    imageformat.save(model, str(export_dir), signatures={"scores": model.scores, "count": model.count},
                     max_chunk_size=256)
    assert (export_dir / "saved_model.cpb").exists()
    return export_dir


def save_scaler_cpb(export_dir: Path) -> Path:
    model = tf_model_zoo.Scaler()
    imageformat.save(model, str(export_dir), signatures=model.__call__, max_chunk_size=256)
    assert (export_dir / "saved_model.cpb").exists()
    return export_dir


@pytest.fixture(scope="module")
def scaler_export(tmp_path_factory) -> Path:
    return save_scaler_cpb(tmp_path_factory.mktemp("scaler") / "export")


def direct_outputs(export_dir: Path, signature: str, examples: list[np.ndarray]) -> dict[str, np.ndarray]:
    function = imageformat.load(str(export_dir)).signatures[signature]
    (name,) = function.structured_input_signature[1]
    return {key: value.numpy() for key, value in function(**{name: tf.constant(np.stack(examples))}).items()}


def equals_direct_calls(expected: dict[str, np.ndarray], examples: list[np.ndarray], keyed: bool = False):
    """An assert_that matcher: every example's prediction is its row of `expected`."""
    def check(results):
        assert len(results) == len(examples)
        for result in results:
            key, result = result if keyed else (None, result)
            index = next(i for i, example in enumerate(examples) if np.array_equal(example, result.example))
            if keyed:
                assert key == f"example-{index}"
            assert sorted(result.inference) == sorted(expected)
            for name, rows in expected.items():
                np.testing.assert_array_equal(np.asarray(result.inference[name]), rows[index])
    return check


def run_pipeline(build, options: dict | None = None):
    pipeline = beam.Pipeline(options=PipelineOptions(flags=[], **(options or {})))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def test_cpb_version_published_to_each_backend_runs_in_runinference(registry_target, scaler_export, tmp_path):
    registry = registry_target.registry()
    record = registry.publish(str(scaler_export), "scaler", VersionPolicy.next_integer(), {}, "scaler.run-1")
    handler = SavedModelHandlerNumpy(record.uri, storage_options=registry_target.storage_options,
                                     cache_dir=str(tmp_path / "cache"), max_batch_size=4)
    expected = direct_outputs(scaler_export, "serving_default", EXAMPLES)

    def build(p):
        predictions = p | beam.Create(EXAMPLES) | RunInference(handler)
        assert_that(predictions, equals_direct_calls(expected, EXAMPLES))
    run_pipeline(build)
    if registry_target.kind != "local":  # downloaded once, into the cache
        assert len(os.listdir(tmp_path / "cache")) == 1


def test_keyed_examples_and_a_second_signature(scaler_export, tmp_path):
    export_dir = save_multi_head_cpb(tmp_path / "multi")
    features = [np.arange(4, dtype=np.float32) * i for i in range(6)]
    expected = direct_outputs(export_dir, "scores", features)
    handler = KeyedModelHandler(SavedModelHandlerNumpy(str(export_dir), signature="scores"))

    def build(p):
        keyed = p | beam.Create([(f"example-{i}", f) for i, f in enumerate(features)])
        assert_that(keyed | RunInference(handler), equals_direct_calls(expected, features, keyed=True))
    run_pipeline(build)


def test_tensor_handler_and_a_custom_inference_fn(scaler_export):
    def inference_fn(model, batch, inference_args, model_id):
        beam.metrics.Metrics.distribution("test", "batch_size").update(len(batch))
        outputs = model(x=tf.stack(batch))
        return [beam.ml.inference.base.PredictionResult(e, {"doubled": 2 * row}, model_id)
                for e, row in zip(batch, outputs["output_0"])]

    examples = [tf.constant(e) for e in EXAMPLES[:4]]
    expected = {"doubled": 2 * direct_outputs(scaler_export, "serving_default", EXAMPLES[:4])["output_0"]}
    handler = SavedModelHandlerTensor(str(scaler_export), inference_fn=inference_fn, min_batch_size=4,
                                      max_batch_size=4)

    def build(p):
        predictions = p | beam.Create(examples) | RunInference(handler)
        assert_that(predictions | beam.Map(lambda r: r._replace(example=r.example.numpy())),
                    equals_direct_calls(expected, EXAMPLES[:4]))
    result = run_pipeline(build)
    [sizes] = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("test").with_name("batch_size"))["distributions"]
    assert (sizes.committed.count, sizes.committed.min, sizes.committed.max) == (1, 4, 4)


def test_model_is_loaded_once_per_worker_and_shared_by_its_threads(scaler_export):
    handler = SavedModelHandlerNumpy(str(scaler_export), max_batch_size=1)
    expected = direct_outputs(scaler_export, "serving_default", EXAMPLES)

    def build(p):
        predictions = (p | beam.Create(EXAMPLES) | beam.Reshuffle() | RunInference(handler))
        assert_that(predictions, equals_direct_calls(expected, EXAMPLES))
    result = run_pipeline(build, {"direct_running_mode": "multi_threading", "direct_num_workers": 2})
    loads = result.metrics().query(beam.metrics.MetricsFilter().with_name("load_model_latency_milli_secs"))
    assert sum(d.committed.count for d in loads["distributions"]) == 1
    inferences = result.metrics().query(beam.metrics.MetricsFilter().with_name("num_inferences"))
    assert sum(c.committed for c in inferences["counters"]) == len(EXAMPLES)


def test_bad_uri_signature_and_inputs_fail_with_clear_messages(scaler_export, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        SavedModelHandlerNumpy(str(tmp_path / "missing")).load_model()
    with pytest.raises(ValueError, match=r"no signature 'nope' \(signatures: serving_default\)"):
        SavedModelHandlerNumpy(str(scaler_export), signature="nope").load_model()
    model = SavedModelHandlerNumpy(str(scaler_export)).load_model()
    with pytest.raises(ValueError, match=r"takes inputs \['x'\]; an example has \['y'\]"):
        model.batch_inputs([{"y": EXAMPLES[0]}], np.stack)


def test_a_partial_download_never_becomes_the_cached_copy(gcs_emulator, scaler_export, tmp_path):
    from tf_bigexport.storage import Registry
    registry = Registry(gcs_emulator.uri("partial"), storage_options=dict(gcs_emulator.storage_options))
    record = registry.publish(str(scaler_export), "scaler", VersionPolicy.next_integer(), {}, "scaler.run-1")
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError):
        version_cache.local_version_dir(record.uri + "-gone", storage_options=dict(gcs_emulator.storage_options),
                                        cache_dir=str(cache))
    assert os.listdir(cache) == []  # the failed attempt left nothing behind
    local = version_cache.local_version_dir(record.uri, storage_options=dict(gcs_emulator.storage_options),
                                            cache_dir=str(cache))
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())
    assert files(local) == files(scaler_export)  # (an empty assets/ has no object to copy)


@pytest.mark.parametrize("damage", ["same size", "truncated", "missing"])
def test_a_damaged_object_in_the_registry_never_reaches_the_loader_or_the_cache(
        request, damage, scaler_export, tmp_path):
    """Published bytes changed in the bucket: the download is checked against the release record.

    S3 keeps no crc32c fsspec reports, so a same-size change is caught by re-reading the
    downloaded copy; on GCS the object's own crc32c catches it before any byte moves.
    """
    from tf_bigexport.storage import Registry, VerificationError
    for emulator in ("s3_emulator", "gcs_emulator"):
        emu = request.getfixturevalue(emulator)
        registry = Registry(emu.uri(f"damaged-{damage.replace(' ', '-')}"), storage_options=dict(emu.storage_options))
        record = registry.publish(str(scaler_export), "scaler", VersionPolicy.next_integer(), {}, "scaler.run-1")
        victim = next(e for e in record.files if e.path.startswith("variables/variables.data"))
        fs, path = emu.filesystem(), f"{registry.store.root}/scaler/{record.version}/{victim.path}"
        data = fs.cat_file(path)
        if damage == "same size":
            fs.pipe_file(path, bytes([data[0] ^ 0xFF]) + data[1:])
        elif damage == "truncated":
            fs.pipe_file(path, data[:-1])
        else:
            fs.rm_file(path)
        fs.pipe_file(f"{registry.store.root}/scaler/{record.version}/stray.txt", b"not in the record")
        cache = tmp_path / emulator / "cache"
        reason = {"same size": "(crc32c|sha256)", "truncated": "size", "missing": "missing"}[damage]
        with pytest.raises(VerificationError, match=rf"against its release record.*\n  {victim.path}: {reason}"):
            SavedModelHandlerNumpy(record.uri, storage_options=dict(emu.storage_options),
                                   cache_dir=str(cache)).load_model()
        assert os.listdir(cache) == []  # nothing damaged is kept for the next load

        fs.pipe_file(path, data)  # repaired: the same call loads, without the stray file
        local = version_cache.local_version_dir(record.uri, storage_options=dict(emu.storage_options),
                                                cache_dir=str(cache))
        assert not os.path.exists(os.path.join(local, "stray.txt"))
        assert SavedModelHandlerNumpy(record.uri, storage_options=dict(emu.storage_options),
                                      cache_dir=str(cache)).load_model()(x=tf.constant([EXAMPLES[1]]))


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_local_version_is_checked_by_size_before_it_loads(damage, scaler_export, tmp_path):
    """Local versions load in place: a file the record lists that is gone or cut short is named
    before TensorFlow reads anything; repaired, the same handler loads."""
    from tf_bigexport.storage import Registry, VerificationError
    record = Registry(str(tmp_path / "registry")).publish(str(scaler_export), "scaler", VersionPolicy.next_integer(),
                                                           {}, "scaler.run-1")
    victim = next(e for e in record.files if e.path.startswith("variables/variables.data"))
    path = tmp_path / "registry" / "scaler" / str(record.version) / victim.path
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:-1])
    else:
        path.unlink()
    reason = {"truncated": "size", "missing": "missing"}[damage]
    with pytest.raises(VerificationError, match=rf"against its release record.*\n  {victim.path}: {reason}"):
        SavedModelHandlerNumpy(record.uri).load_model()
    path.write_bytes(data)
    assert SavedModelHandlerNumpy(record.uri).load_model()(x=tf.constant([EXAMPLES[1]]))


def test_the_cache_keeps_the_most_recently_used_copies(gcs_emulator, scaler_export, tmp_path):
    from tf_bigexport.storage import Registry
    registry = Registry(gcs_emulator.uri("cache-bound"), storage_options=dict(gcs_emulator.storage_options))
    uris = [registry.publish(str(scaler_export), "scaler", VersionPolicy.next_integer(), {}, f"scaler.run-{i}").uri
            for i in range(4)]
    cache = tmp_path / "cache"
    fetch = lambda uri: version_cache.local_version_dir(uri, storage_options=dict(gcs_emulator.storage_options),
                                                        cache_dir=str(cache), keep=2)
    copies = [fetch(uri) for uri in uris[:3]]
    assert len(os.listdir(cache)) == 3  # all used within the idle time: none removed yet
    idle = time.time() - version_cache.IDLE_SECONDS - 60
    for path in copies:
        os.utime(path, (idle, idle))
    fetch(uris[1])  # a use touches its copy
    abandoned = cache / ".scaler-9-partial"
    abandoned.mkdir()
    old = time.time() - version_cache.ABANDONED_PARTIAL_SECONDS - 60
    os.utime(abandoned, (old, old))
    newest = fetch(uris[3])  # a download evicts: the two most recently used stay
    assert sorted(os.listdir(cache)) == sorted(os.path.basename(p) for p in (newest, copies[1]))
    with pytest.raises(ValueError, match="keep must be at least 1"):
        version_cache.local_version_dir(uris[0], cache_dir=str(cache), keep=0)


def test_docs_example_pipeline_writes_predictions_equal_to_direct_calls(scaler_export, tmp_path):
    """docs/examples/batch_inference.py, as docs/inference.md runs it (DirectRunner)."""
    from hostile_testkit import REPO, child_env
    import json
    import subprocess

    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(json.dumps({"id": f"e{i}", "x": e.tolist()}) + "\n" for i, e in enumerate(EXAMPLES)))
    done = subprocess.run([sys.executable, "docs/examples/batch_inference.py", "--model_uri", str(scaler_export),
                           "--input", str(examples), "--output", str(tmp_path / "out" / "part")],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for f in sorted((tmp_path / "out").glob("part*.jsonl")) for line in f.read_text().splitlines()]
    expected = direct_outputs(scaler_export, "serving_default", EXAMPLES)["output_0"]
    assert sorted(line["id"] for line in lines) == sorted(f"e{i}" for i in range(len(EXAMPLES)))
    for line in lines:
        np.testing.assert_array_equal(np.asarray(line["output_0"], dtype=np.float32), expected[int(line["id"][1:])])


def test_plain_pb_version_and_beams_multi_process_sharing(tmp_path):
    """A version TensorFlow saved itself (saved_model.pb, as the servable form is), run with
    large_model=True: Beam loads it in a separate process and proxies the calls."""
    model = tf_model_zoo.Scaler()
    tf.saved_model.save(model, str(tmp_path / "pb"), signatures=model.__call__)
    expected = direct_outputs(tmp_path / "pb", "serving_default", EXAMPLES)
    handler = SavedModelHandlerNumpy(str(tmp_path / "pb"), large_model=True, max_batch_size=4)
    assert handler.share_model_across_processes()

    def build(p):
        assert_that(p | beam.Create(EXAMPLES) | RunInference(handler), equals_direct_calls(expected, EXAMPLES))
    run_pipeline(build)
