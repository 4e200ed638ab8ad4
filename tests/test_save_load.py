"""imageformat.save / load end to end, checked against TensorFlow's own code.

Every model is saved twice: with imageformat.save at a tiny split threshold
(so the .cpb path, graph assembly and merging all run) and with a plain
tf.saved_model.save. TensorFlow's C++ fingerprinting is the referee.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any, Iterator
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.python.framework import ops
from tensorflow.python.saved_model import save as save_lib
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunked
from tf_bigexport.imageformat import graph_assembly
from tf_bigexport.imageformat import tf_support
import tf_model_zoo

REPO = pathlib.Path(__file__).resolve().parents[1]
# Small enough that every model's graph nodes and functions land in chunks of their own.
SMALL_CHUNK = 2048


@dataclasses.dataclass
class Saved:
    case: tf_model_zoo.ModelCase
    obj: Any
    expected: dict[str, np.ndarray]
    image_dir: pathlib.Path
    plain_dir: pathlib.Path
    graph_pairs: list[tuple[Any, Any]]  # (TensorFlow's GraphDef, ours) for each exported graph


@contextlib.contextmanager
def compare_graph_assembly(pairs: list[tuple[Any, Any]]) -> Iterator[None]:
    """Records, for every GraphDef TensorFlow builds, our assembly of the same graph."""
    original = ops.Graph._as_graph_def  # pylint: disable=protected-access

    def spy(self: ops.Graph, from_version: Any = None, add_shapes: bool = False,
            use_pybind11_proto: bool = False) -> Any:
        graph_def, version = original(self, from_version, add_shapes, use_pybind11_proto)
        if from_version is None:
            pairs.append((graph_def, graph_assembly.assemble_graph_def(self, add_shapes=add_shapes)))
        return graph_def, version

    with mock.patch.object(ops.Graph, "_as_graph_def", spy):
        yield


_CACHE: dict[str, Saved] = {}


def saved_case(name: str, tmp_path_factory: pytest.TempPathFactory) -> Saved:
    if name not in _CACHE:
        case = next(c for c in tf_model_zoo.CASES if c.name == name)
        workdir = tmp_path_factory.mktemp(name)
        obj = case.build(str(workdir))
        expected = case.call_original(obj)
        image_dir, plain_dir = workdir / "image", workdir / "plain"
        imageformat.save(obj, image_dir, signatures=case.signatures(obj), max_chunk_size=SMALL_CHUNK)
        pairs: list[tuple[Any, Any]] = []
        with compare_graph_assembly(pairs):
            tf.saved_model.save(obj, str(plain_dir), signatures=case.signatures(obj))
        _CACHE[name] = Saved(case, obj, expected, image_dir, plain_dir, pairs)
    return _CACHE[name]


@pytest.fixture(scope="module", params=[case.name for case in tf_model_zoo.CASES])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Saved:
    return saved_case(request.param, tmp_path_factory)


def fingerprint_of(directory: pathlib.Path) -> fingerprint_pb2.FingerprintDef:
    return fingerprint_pb2.FingerprintDef.FromString(
        fingerprinting_pywrap.CreateFingerprintDef(str(directory)))


def assert_outputs_equal(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def assert_outputs_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        if expected[key].dtype.kind == "f":
            np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


# --- every model ------------------------------------------------------------

def test_writes_split_image_format(saved: Saved) -> None:
    names = set(os.listdir(saved.image_dir))
    assert {"saved_model.cpb", "fingerprint.pb", "variables", "assets"} <= names
    assert "saved_model.pb" not in names
    assert (saved.image_dir / "variables" / "variables.index").exists()
    with chunked.ChunkedFile(saved.image_dir / "saved_model.cpb") as chunks:
        assert len(chunks) > 2  # root, graph nodes and functions in chunks of their own


def test_tensorflow_fingerprinting_reads_cpb(saved: Saved) -> None:
    fingerprint = fingerprint_of(saved.image_dir)
    assert fingerprint.graph_def_program_hash != 0
    assert fingerprint.saved_model_checksum != 0
    assert fingerprint.signature_def_hash != 0


def test_fingerprint_file_written_by_tensorflow(saved: Saved) -> None:
    on_disk = fingerprint_pb2.FingerprintDef.FromString(
        (saved.image_dir / "fingerprint.pb").read_bytes())
    fresh = fingerprint_of(saved.image_dir)
    if "uuid" in fingerprint_pb2.FingerprintDef.DESCRIPTOR.fields_by_name:  # TensorFlow 2.17 on
        on_disk.ClearField("uuid")  # random per computation
        fresh.ClearField("uuid")
    assert on_disk == fresh
    read_back = tf.saved_model.experimental.read_fingerprint(str(saved.image_dir))
    assert read_back.graph_def_program_hash == on_disk.graph_def_program_hash
    assert read_back.saved_model_checksum == on_disk.saved_model_checksum


def test_merged_proto_as_plain_pb_matches_tensorflows_save(saved: Saved, tmp_path: pathlib.Path) -> None:
    merged = imageformat.read_saved_model(str(saved.image_dir))
    as_pb = tmp_path / "as_pb"
    shutil.copytree(saved.image_dir, as_pb, ignore=shutil.ignore_patterns("saved_model.cpb", "fingerprint.pb"))
    (as_pb / "saved_model.pb").write_bytes(merged.SerializeToString(deterministic=True))

    ours, theirs = fingerprint_of(as_pb), fingerprint_of(saved.plain_dir)
    assert ours.graph_def_program_hash == theirs.graph_def_program_hash
    assert ours.signature_def_hash == theirs.signature_def_hash
    assert ours.checkpoint_hash == theirs.checkpoint_hash

    from_pb = saved.case.call_loaded(tf.saved_model.load(str(as_pb)))
    assert_outputs_equal(from_pb, saved.case.call_loaded(tf.saved_model.load(str(saved.plain_dir))))


def test_load_cpb_gives_tensorflows_outputs(saved: Saved) -> None:
    from_cpb = saved.case.call_loaded(imageformat.load(saved.image_dir))
    from_plain = saved.case.call_loaded(tf.saved_model.load(str(saved.plain_dir)))
    assert_outputs_equal(from_cpb, from_plain)
    assert_outputs_close(from_cpb, saved.expected)
    # A plain .pb directory loads through imageformat.load as well.
    assert_outputs_equal(saved.case.call_loaded(imageformat.load(saved.plain_dir)), from_plain)


def test_assembled_graph_def_equals_tensorflows(saved: Saved) -> None:
    assert saved.graph_pairs, "TensorFlow's save built no GraphDef"
    for theirs, ours in saved.graph_pairs:
        # Only the library's order may differ (a C++ hash map's vs insertion order).
        assert sorted(f.signature.name for f in theirs.library.function) == \
            sorted(f.signature.name for f in ours.library.function)
        by_name = {f.signature.name: f for f in ours.library.function}
        reordered = type(ours)()
        reordered.CopyFrom(ours)
        del reordered.library.function[:]
        reordered.library.function.extend(by_name[f.signature.name] for f in theirs.library.function)
        assert reordered == theirs


# --- model-specific user flows ----------------------------------------------

def test_custom_module_flow_after_loading_cpb(tmp_path_factory: pytest.TempPathFactory) -> None:
    saved = saved_case("custom_module", tmp_path_factory)
    loaded = imageformat.load(saved.image_dir)
    assert float(loaded(tf.constant(4.0))) == 10.0
    loaded.mutate(tf.constant(3.0))
    assert float(loaded(tf.constant(4.0))) == 12.0
    with pytest.raises(ValueError, match="Could not find matching concrete function"):
        loaded(tf.constant([1.0, 2.0]))
    assert loaded.v.trainable
    # One gradient step on (v*2 - 1)^2 at v=3: gradient 4*(2v-1) = 20.
    with tf.GradientTape() as tape:
        loss = (loaded(tf.constant(2.0)) - 1.0) ** 2
    (gradient,) = tape.gradient(loss, [loaded.v])
    assert float(gradient) == pytest.approx(20.0)
    loaded.v.assign_sub(0.01 * gradient)
    assert float(loaded.v) == pytest.approx(2.8)


def test_mobilenet_top5_survives(tmp_path_factory: pytest.TempPathFactory) -> None:
    saved = saved_case("mobilenet", tmp_path_factory)
    loaded = imageformat.load(saved.image_dir)
    probabilities = saved.case.call_loaded(loaded)["probabilities"]
    before = np.argsort(saved.expected["probabilities"], axis=1)[:, -5:]
    after = np.argsort(probabilities, axis=1)[:, -5:]
    np.testing.assert_array_equal(after, before)


def test_vocabulary_asset_copied_and_used(tmp_path_factory: pytest.TempPathFactory) -> None:
    saved = saved_case("vocabulary_table", tmp_path_factory)
    asset = saved.image_dir / "assets" / "vocab.txt"
    assert asset.read_text(encoding="utf-8").split() == tf_model_zoo.VOCABULARY
    merged = imageformat.read_saved_model(str(saved.image_dir))
    assert [a.filename for a in merged.meta_graphs[0].asset_file_def] == ["vocab.txt"]
    loaded = imageformat.load(saved.image_dir)
    lookups = loaded.signatures["serving_default"](words=tf.constant(["date", "nope"]))["output_0"]
    assert lookups.numpy().tolist() == [3, -1]


# --- options, sharding, files on disk ------------------------------------------

class Wide(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(11)
        self.layers = [tf.Variable(rng.standard_normal(16384).astype(np.float32), name=f"w{i}")
                       for i in range(4)]

    @tf.function(input_signature=[tf.TensorSpec([16384], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(x * w) for w in self.layers])


def test_sharded_checkpoint_with_max_shard_size(tmp_path: pathlib.Path) -> None:
    """TensorFlow shards by size from 2.16 on; before, imageformat.save reshards what it wrote."""
    module = Wide()
    options = tf.saved_model.SaveOptions(save_debug_info=True)
    imageformat.save(module, tmp_path / "wide", options=options, max_chunk_size=SMALL_CHUNK, max_shard_size=100_000)

    shards = sorted((tmp_path / "wide" / "variables").glob("variables.data-*"))
    assert len(shards) >= 3, shards
    assert [p.name for p in shards] == [f"variables.data-{i:05d}-of-{len(shards):05d}" for i in range(len(shards))]
    assert sorted(p.name for p in (tmp_path / "wide" / "variables").iterdir()) == sorted(
        [p.name for p in shards] + ["variables.index"])  # no leftover single shard or temporary parts
    assert (tmp_path / "wide" / "saved_model.cpb").exists()
    assert options.experimental_image_format is False  # the caller's options are left alone
    # fingerprint.pb holds the checkpoint_hash of the index as it is now
    written = fingerprint_pb2.FingerprintDef.FromString((tmp_path / "wide" / "fingerprint.pb").read_bytes())
    assert written.checkpoint_hash == fingerprint_of(tmp_path / "wide").checkpoint_hash != 0
    loaded = imageformat.load(tmp_path / "wide")
    for original, restored in zip(module.layers, loaded.layers):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    x = tf.ones([16384])
    assert float(loaded(x)) == float(module(x))


def test_unsplit_proto_is_plain_pb_and_stale_files_go(tmp_path: pathlib.Path) -> None:
    module = tf_model_zoo.Scaler()
    export = tmp_path / "model"
    imageformat.save(module, export, max_chunk_size=SMALL_CHUNK)
    assert (export / "saved_model.cpb").exists()
    # Default threshold: a tiny model needs no split, so TensorFlow's plain file
    # is written and the earlier .cpb must not shadow it.
    imageformat.save(module, export)
    assert (export / "saved_model.pb").exists()
    assert not (export / "saved_model.cpb").exists()
    imageformat.save(module, export, max_chunk_size=SMALL_CHUNK)
    assert not (export / "saved_model.pb").exists()
    loaded = imageformat.load(export)
    np.testing.assert_array_equal(loaded(tf.ones([1, 3])).numpy(), module(tf.ones([1, 3])).numpy())


def test_patches_only_while_saving(tmp_path: pathlib.Path) -> None:
    if tf_support.is_enabled():
        pytest.skip("enable() ran in this process; the patches are meant to stay")
    original_as_graph_def = ops.Graph._as_graph_def  # pylint: disable=protected-access
    original_fill = save_lib._fill_meta_graph_def  # pylint: disable=protected-access
    seen: dict[str, Any] = {}

    class Probe(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            seen["splitter"] = getattr(save_lib, "proto_splitter", None)
            seen["as_graph_def"] = ops.Graph._as_graph_def  # pylint: disable=protected-access
            return x + 1

    imageformat.save(Probe(), tmp_path / "probe")
    assert seen["splitter"] is not None and seen["as_graph_def"] is not original_as_graph_def
    assert ops.Graph._as_graph_def is original_as_graph_def  # pylint: disable=protected-access
    assert save_lib._fill_meta_graph_def is original_fill  # pylint: disable=protected-access
    assert not hasattr(save_lib, "proto_splitter")
    with pytest.raises(ValueError, match="disabled in OSS"):
        tf.saved_model.SaveOptions(experimental_image_format=True)


def test_rejects_bad_arguments(tmp_path: pathlib.Path) -> None:
    module = tf_model_zoo.Scaler()
    with pytest.raises(TypeError, match="SaveOptions"):
        imageformat.save(module, tmp_path / "a", options={"experimental_image_format": True})
    with pytest.raises(ValueError, match="max_chunk_size"):
        imageformat.save(module, tmp_path / "b", max_chunk_size=0)


def test_corrupt_cpb_names_the_file(tmp_path: pathlib.Path) -> None:
    module = tf_model_zoo.Scaler()
    export = tmp_path / "model"
    imageformat.save(module, export, max_chunk_size=SMALL_CHUNK)
    cpb = export / "saved_model.cpb"
    data = bytearray(cpb.read_bytes())
    cpb.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(OSError, match="saved_model.cpb"):
        imageformat.load(export)


def test_missing_program_file_is_tensorflows_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="SavedModel file does not exist"):
        imageformat.load(tmp_path / "empty")


_ENABLE_SCRIPT = """
import json, os, sys
import tensorflow as tf
from tf_bigexport import imageformat
sys.path.insert(0, sys.argv[3])  # tests/
import tf_model_zoo

image_dir, plain_dir = sys.argv[1], sys.argv[2]
module = tf_model_zoo.build_custom_module()
imageformat.enable(max_chunk_size=512)
imageformat.enable(max_chunk_size=512)  # idempotent
tf.saved_model.save(module, image_dir,
                    options=tf.saved_model.SaveOptions(experimental_image_format=True))
tf.saved_model.save(module, plain_dir)  # without the option: TensorFlow's plain file
loaded = tf.saved_model.load(image_dir)
print(json.dumps({
    "image_files": sorted(os.listdir(image_dir)),
    "plain_files": sorted(os.listdir(plain_dir)),
    "call": float(loaded(tf.constant(4.0))),
}))
"""


def test_enable_makes_tensorflows_own_calls_work(tmp_path: pathlib.Path) -> None:
    # A fresh interpreter: enable() is process-wide and meant to stay on.
    result = subprocess.run(
        [sys.executable, "-c", _ENABLE_SCRIPT, str(tmp_path / "image"), str(tmp_path / "plain"), str(REPO / "tests")],
        # Not from the repository root, whose bare tf_bigexport/ folder would shadow an installed wheel.
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "saved_model.cpb" in report["image_files"] and "saved_model.pb" not in report["image_files"]
    assert "fingerprint.pb" in report["image_files"]
    assert "saved_model.pb" in report["plain_files"] and "saved_model.cpb" not in report["plain_files"]
    assert report["call"] == 10.0
    fingerprint_of(tmp_path / "image")
