"""The TensorFlow version/shape check and the scoping of our patches."""
from __future__ import annotations

import dataclasses
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
from tf_bigexport.imageformat import tf_version



def test_installed_tensorflow_is_supported() -> None:
    assert tf_version.minor_of(tf.__version__) in tf_version.SUPPORTED_MINORS
    tf_support.check_supported()


@pytest.mark.parametrize("version", ["2.14.1", "2.22.0", "2.22.0rc0", "2.22.0-dev20261101", "3.0.0"])
def test_version_outside_the_range_is_refused_by_name(version: str) -> None:
    with pytest.raises(tf_support.UnsupportedTensorFlowError) as raised:
        tf_support.check_supported(version=version)
    message = str(raised.value)
    assert version in message and "2.15 to 2.21" in message
    assert isinstance(raised.value, ImportError)


@pytest.mark.parametrize("version", ["2.15.1", "2.16.1", "2.17.0rc1", "2.21.0"])
def test_every_minor_in_the_range_passes_the_version_check(version: str) -> None:
    tf_version.check_version(version)


def test_unsupported_tensorflow_is_refused_before_any_internal_is_imported(tmp_path: pathlib.Path) -> None:
    """A TensorFlow outside the range may lack the modules tf_support imports: the
    version is what the error names, not a missing internal module."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.14.1'\n")
    script = "from tf_bigexport.imageformat import tf_support\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("tf_bigexport.imageformat.tf_version.UnsupportedTensorFlowError: tf-bigexport supports "
                    "TensorFlow 2.15 to 2.21; the installed TensorFlow is 2.14.1"), result.stderr


def test_missing_tensorflow_says_what_to_install(tmp_path: pathlib.Path) -> None:
    script = ("import sys; sys.modules['tensorflow'] = None\n"  # what an environment without TensorFlow does
              "from tf_bigexport.imageformat import tf_support\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "needs TensorFlow 2.15 to 2.21 and none is installed" in last
    assert "tf-bigexport[cpu]" in last and "tf-bigexport[gpu]" in last


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


def test_import_fails_loudly_on_unsupported_internals(tmp_path: pathlib.Path) -> None:
    script = (
        "from tensorflow.python.saved_model import save_options\n"
        "del save_options.is_oss\n"
        "from tf_bigexport import imageformat\n"
        "imageformat.save\n"
    )
    # Not from the repository root: there `tf_bigexport/` is the bare folder, not the installed package.
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "UnsupportedTensorFlowError" in result.stderr
    assert f"installed TensorFlow {tf.__version__}" in result.stderr
    assert "is_oss" in result.stderr


def test_image_format_options_copy_everything_and_leave_the_original() -> None:
    settings = dict(save_debug_info=True, namespace_whitelist=["Custom"])
    if tf_support.ADAPTATION.sharding_callback:  # TensorFlow 2.16 on
        settings["experimental_sharding_callback"] = tf.train.experimental.MaxShardSizePolicy(max_shard_size=1000)
    if "extra_tags" in save_options.SaveOptions.__slots__:  # TensorFlow 2.17 on
        settings["extra_tags"] = ["gpu"]
    original = tf.saved_model.SaveOptions(**settings)
    copy = tf_support.image_format_options(original)
    assert copy is not original
    assert copy.experimental_image_format is True and original.experimental_image_format is False
    for name in save_options.SaveOptions.__slots__:
        if name != "experimental_image_format":
            assert getattr(copy, name) == getattr(original, name), name
    assert tf_support.image_format_options(None).experimental_image_format is True


def test_max_shard_size_is_tensorflows_policy_where_it_has_one() -> None:
    options = tf_support.image_format_options(None, max_shard_size=5000)
    if tf_support.ADAPTATION.sharding_callback:  # 2.16 on: TensorFlow shards; 2.15: our splitter reshards
        assert isinstance(options.experimental_sharding_callback, tf.train.experimental.MaxShardSizePolicy)
    else:
        assert "experimental_sharding_callback" not in save_options.SaveOptions.__slots__
    for bad in (0, -5, 2.5, True, "1GB"):
        with pytest.raises(ValueError, match="max_shard_size must be a positive number of bytes"):
            tf_support.image_format_options(None, max_shard_size=bad)


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


def test_every_supported_minor_has_its_adaptation() -> None:
    assert sorted(tf_support.ADAPTATIONS) == sorted(tf_version.SUPPORTED_MINORS)
    assert tf_support.ADAPTATION is tf_support.ADAPTATIONS[tf_version.minor_of(tf.__version__)]


def test_an_adaptation_that_does_not_match_the_installed_sources_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "_options" if tf_support.ADAPTATION.saveable_view_options == "options" else "options"
    monkeypatch.setattr(tf_support, "ADAPTATION", dataclasses.replace(
        tf_support.ADAPTATION, saveable_view_options=wrong,
        contains_saved_model_sees_cpb=not tf_support.ADAPTATION.contains_saved_model_sees_cpb))
    with pytest.raises(tf_support.UnsupportedTensorFlowError) as raised:
        tf_support.check_supported()
    assert f"_SaveableView.{wrong}" in str(raised.value)
    assert "maybe_saved_model_directory" in str(raised.value)


class Halve(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.range(64, dtype=tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([64], tf.float32)])
    def __call__(self, x):
        return (x + self.w) / 2


def test_contains_saved_model_sees_our_cpb_while_loading(tmp_path: pathlib.Path) -> None:
    """tf.saved_model.contains_saved_model learned saved_model.cpb in 2.17; on 2.16 our load patches teach it."""
    export_dir = tmp_path / "halve"
    imageformat.save(Halve(), export_dir, max_chunk_size=256)
    assert (export_dir / "saved_model.cpb").exists() and not (export_dir / "saved_model.pb").exists()
    with tf_support.chunked_loading():
        assert tf.saved_model.contains_saved_model(str(export_dir))
        assert tf.saved_model.contains_saved_model(export_dir)
        assert not tf.saved_model.contains_saved_model(str(tmp_path))
        loaded = tf.saved_model.load(str(export_dir))
    assert loaded(tf.ones([64])).numpy()[3] == 2.0
    if not tf_support.is_enabled():
        sees_cpb = tf.saved_model.contains_saved_model(str(export_dir))
        assert sees_cpb == tf_support.ADAPTATION.contains_saved_model_sees_cpb  # TensorFlow's own, restored
