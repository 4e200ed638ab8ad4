"""Large captured constants keep their bytes out of the exported graph until written.

The saved program must be exactly what TensorFlow's own save makes of the same
object: same graph_def_program_hash (constant values included), same outputs,
for a split .cpb and for an unsplit .pb.
"""
from __future__ import annotations

import pathlib
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunked, deferred_constants, splitter, tf_support
from tf_bigexport.imageformat.chunk_errors import SplitError

BIG = 300_000  # float32 elements: 1.2 MB, past DEFER_MIN_BYTES
INPUT = tf.constant([0, 1, 7, BIG - 1], tf.int64)


class Tables(tf.Module):
    """Deferred (random float32, bfloat16, int64) and not deferred (uniform, small) captures."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(3)
        self.random = tf.constant(rng.standard_normal(BIG).astype(np.float32))
        self.halves = tf.cast(tf.constant(rng.standard_normal(BIG * 2).astype(np.float32)), tf.bfloat16)
        self.counts = tf.constant(rng.integers(0, 1 << 40, BIG, dtype=np.int64))
        self.uniform = tf.fill([BIG], 2.5)
        self.small = tf.constant(np.arange(10, dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def __call__(self, indices):
        return {
            "random": tf.gather(self.random, indices),
            "halves": tf.cast(tf.gather(self.halves, indices), tf.float32),
            "counts": tf.gather(self.counts, indices),
            "uniform": tf.gather(self.uniform, indices) + tf.reduce_sum(self.small),
        }


def _fingerprint(directory: pathlib.Path) -> fingerprint_pb2.FingerprintDef:
    return fingerprint_pb2.FingerprintDef.FromString(fingerprinting_pywrap.CreateFingerprintDef(str(directory)))


def _outputs(loaded) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in loaded(INPUT).items()}


@pytest.fixture(scope="module")
def tables() -> Tables:
    return Tables()


@pytest.fixture(scope="module")
def plain_dir(tables: Tables, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("plain")
    tf.saved_model.save(tables, str(directory))
    return directory


@pytest.mark.parametrize("max_chunk_size, program", [(1 << 20, "saved_model.cpb"),
                                                     (None, "saved_model.pb")])
def test_deferred_save_equals_tensorflows(tables, plain_dir, tmp_path, max_chunk_size, program):
    exported = []
    real_export = deferred_constants.export_deferred

    def spy(capture, registry):
        result = real_export(capture, registry)
        exported.append((capture.dtype, result is not None))
        return result

    image_dir = tmp_path / "image"
    with mock.patch.object(deferred_constants, "export_deferred", spy):
        imageformat.save(tables, image_dir, max_chunk_size=max_chunk_size)
    # The three random tables were deferred; the uniform and the small ones were not.
    assert sorted((dtype.name, deferred) for dtype, deferred in exported) == [
        ("bfloat16", True), ("float32", False), ("float32", False), ("float32", True), ("int64", True)]
    assert (image_dir / program).exists()

    merged = imageformat.read_saved_model(str(image_dir))
    as_pb = tmp_path / "as_pb"
    shutil.copytree(image_dir, as_pb, ignore=shutil.ignore_patterns("saved_model.cpb", "fingerprint.pb"))
    (as_pb / "saved_model.pb").write_bytes(merged.SerializeToString(deterministic=True))
    assert _fingerprint(as_pb).graph_def_program_hash == _fingerprint(plain_dir).graph_def_program_hash
    assert _fingerprint(image_dir).graph_def_program_hash != 0  # TensorFlow reads what we wrote

    expected = {key: value.numpy() for key, value in tables(INPUT).items()}
    held_out = []
    real_read = chunked.read_saved_model

    def read_spy(directory, **kwargs):
        result = real_read(directory, **kwargs)
        held_out.append(kwargs.get("graph_constants"))
        held_out.append(sorted(kwargs.get("graph_constants") or {}))
        return result

    with mock.patch.object(chunked, "read_saved_model", read_spy):
        got = _outputs(imageformat.load(image_dir))
    if program == "saved_model.cpb":
        # The three deferred tables came back as held-out records, and the
        # restore took each of them (straight into its tensor).
        holder, names = held_out
        assert len(names) == 3 and holder == {}
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_plain_tensorflow_save_is_untouched(tables, tmp_path):
    """Even with our save patches installed, a plain save never defers."""
    with mock.patch.object(deferred_constants, "export_deferred",
                           side_effect=AssertionError("deferred in a plain save")):
        with tf_support.image_format_saving():
            tf.saved_model.save(tables, str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "saved_model.pb").exists()


def test_export_meta_graph_keeps_constants_in_the_graph(tables, tmp_path):
    """export_meta_graph serializes the MetaGraphDef itself: nothing may be deferred."""
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.python.saved_model import save as save_lib

    path = tmp_path / "graph.meta"
    with tf_support.image_format_saving():
        save_lib.export_meta_graph(tables, str(path), options=tf_support.image_format_options(None))
    meta_graph = meta_graph_pb2.MetaGraphDef.FromString(path.read_bytes())
    sizes = sorted(len(node.attr["value"].tensor.tensor_content)
                   for node in meta_graph.graph_def.node if node.op == "Const")
    assert sizes[-3:] == [BIG * 2 * 2, BIG * 4, BIG * 8]  # bfloat16, float32, int64 tables


def test_splitter_refuses_deferred_content_it_cannot_place():
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    node = graph.node.add(name="Const", op="Const")
    node.attr["value"].tensor.dtype = 1  # float32
    node.attr["value"].tensor.tensor_shape.dim.add(size=4)
    with pytest.raises(SplitError, match="not nodes of the graph"):
        splitter.plan_split(graph, 64, deferred_constants={"Other": bytes(16)})
    with pytest.raises(SplitError, match="not a constant of 12 bytes"):
        splitter.plan_split(graph, 64, deferred_constants={"Const": bytes(12)})
    node.attr["value"].tensor.tensor_content = bytes(16)
    with pytest.raises(SplitError, match="empty tensor_content"):
        splitter.plan_split(graph, 64, deferred_constants={"Const": bytes(16)})
