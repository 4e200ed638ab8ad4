"""The TensorFlow version/shape check and the scoping of our patches."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import threading

import pytest
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.saved_model import loader_impl
from tensorflow.python.saved_model import save as save_lib
from tensorflow.python.saved_model import save_options

from tf_bigexport import imageformat
from tf_bigexport.imageformat import graph_assembly
from tf_bigexport.imageformat import tf_support

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_installed_tensorflow_is_supported() -> None:
    assert tf.__version__.startswith("2.21.")
    tf_support.check_supported()


def test_other_version_is_refused_by_name() -> None:
    with pytest.raises(tf_support.UnsupportedTensorFlowError) as raised:
        tf_support.check_supported(version="2.22.0")
    message = str(raised.value)
    assert "2.22.0" in message and "2.21.x" in message
    assert isinstance(raised.value, ImportError)


def test_missing_fill_meta_graph_def_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(save_lib, "_fill_meta_graph_def")
    with pytest.raises(tf_support.UnsupportedTensorFlowError, match="_fill_meta_graph_def") as raised:
        tf_support.check_supported()
    assert tf.__version__ in str(raised.value)


def test_changed_as_graph_def_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def _as_graph_def(self, add_shapes=False):  # the shape we would mis-call
        raise AssertionError("never called")
    monkeypatch.setattr(ops.Graph, "_as_graph_def", _as_graph_def)
    with pytest.raises(tf_support.UnsupportedTensorFlowError, match="_as_graph_def"):
        tf_support.check_supported()


def test_loader_that_bypasses_parse_saved_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse_saved_model_with_debug_info(export_dir):
        return None, None
    monkeypatch.setattr(loader_impl, "parse_saved_model_with_debug_info", parse_saved_model_with_debug_info)
    with pytest.raises(tf_support.UnsupportedTensorFlowError, match="parse_saved_model"):
        tf_support.check_supported()


def test_save_without_splitter_call_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def save_and_return_nodes(obj, export_dir, signatures=None, options=None):
        return [], {}
    monkeypatch.setattr(save_lib, "save_and_return_nodes", save_and_return_nodes)
    with pytest.raises(tf_support.UnsupportedTensorFlowError, match="SavedModelSplitter"):
        tf_support.check_supported()


def test_import_fails_loudly_on_unsupported_internals() -> None:
    script = (
        "from tensorflow.python.saved_model import save_options\n"
        "del save_options.is_oss\n"
        "from tf_bigexport import imageformat\n"
        "imageformat.save\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "UnsupportedTensorFlowError" in result.stderr
    assert f"installed TensorFlow {tf.__version__}" in result.stderr
    assert "is_oss" in result.stderr


def test_image_format_options_copy_everything_and_leave_the_original() -> None:
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=1000)
    original = tf.saved_model.SaveOptions(
        save_debug_info=True, experimental_sharding_callback=policy, extra_tags=["gpu"],
        namespace_whitelist=["Custom"])
    copy = tf_support.image_format_options(original)
    assert copy is not original
    assert copy.experimental_image_format is True and original.experimental_image_format is False
    for name in save_options.SaveOptions.__slots__:
        if name != "experimental_image_format":
            assert getattr(copy, name) == getattr(original, name), name
    assert tf_support.image_format_options(None).experimental_image_format is True


def test_save_patches_nest_and_unwind() -> None:
    if tf_support.is_enabled():
        pytest.skip("enable() ran in this process; the patches are meant to stay")
    original = ops.Graph._as_graph_def  # pylint: disable=protected-access
    with tf_support.image_format_saving(max_chunk_size=100):
        patched = ops.Graph._as_graph_def  # pylint: disable=protected-access
        assert patched is not original
        with tf_support.image_format_saving():
            assert ops.Graph._as_graph_def is patched  # pylint: disable=protected-access
        assert ops.Graph._as_graph_def is patched  # still held by the outer block
    assert ops.Graph._as_graph_def is original  # pylint: disable=protected-access
    assert not hasattr(save_lib, "proto_splitter")


def test_assembly_runs_only_inside_image_format_saves(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: pathlib.Path) -> None:
    """Another thread's GraphDef during our save takes TensorFlow's own path; our save assembles."""
    real = graph_assembly.assemble_graph_def
    assembled: list[ops.Graph] = []

    def counting(graph: ops.Graph, *, add_shapes: bool = False):
        assembled.append(graph)
        return real(graph, add_shapes=add_shapes)

    monkeypatch.setattr(graph_assembly, "assemble_graph_def", counting)
    graph = ops.Graph()
    with graph.as_default():
        tf.constant(1.0, name="one")
    results = {}
    with tf_support.image_format_saving():
        thread = threading.Thread(target=lambda: results.setdefault("graph_def", graph.as_graph_def()))
        thread.start()
        thread.join()
    assert [node.name for node in results["graph_def"].node] == ["one"]
    assert assembled == []

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def __call__(self, x):
            return 2 * x

    imageformat.save(Double(), tmp_path / "double", max_chunk_size=256)
    assert len(assembled) == 1


def test_enable_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="max_chunk_size"):
        tf_support.enable(max_chunk_size=-5)


def test_failed_save_and_load_unwind_patches(tmp_path: pathlib.Path) -> None:
    if tf_support.is_enabled():
        pytest.skip("enable() ran in this process; the patches are meant to stay")
    original_as_graph_def = ops.Graph._as_graph_def  # pylint: disable=protected-access
    original_parse = loader_impl.parse_saved_model
    with pytest.raises(ValueError, match="Trackable"):
        imageformat.save(object(), tmp_path / "not_trackable", max_chunk_size=256)
    with pytest.raises(OSError):
        imageformat.load(tmp_path / "nothing_here")
    assert ops.Graph._as_graph_def is original_as_graph_def  # pylint: disable=protected-access
    assert loader_impl.parse_saved_model is original_parse
    assert not hasattr(save_lib, "proto_splitter")
