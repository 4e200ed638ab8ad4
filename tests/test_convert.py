"""`convert`: .pb <-> .cpb and either to the servable form, from local
directories and published versions (local, GCS and S3 emulators), and bad
input refused with exit status 5 and nothing written or published."""
from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest
import tensorflow as tf

from tf_bigexport import imageformat, storage
from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.imageformat import chunked, loadability, splitter
from tf_bigexport.pipeline import cli
from tf_bigexport.pipeline.argparsing import UsageError
from tf_bigexport.pipeline.exit_codes import ExitCode
import servable_proof
import tf_model_zoo


def _case(name: str) -> tf_model_zoo.ModelCase:
    return next(c for c in tf_model_zoo.CASES if c.name == name)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """TensorFlow's own plain saves of two seed models, with their original outputs."""
    root = tmp_path_factory.mktemp("convert-sources")
    saved = {}
    for name in ("captured_constants", "vocabulary_table"):
        case = _case(name)
        obj = case.build(str(root))
        signatures = case.signatures(obj)
        inputs, expected = servable_proof.original_outputs(obj, signatures)
        tf.saved_model.save(obj, str(root / name), signatures=signatures)
        saved[name] = {"dir": root / name, "inputs": inputs, "expected": expected}
    return saved


def convert(*argv: str) -> int:
    return cli.main(["convert", *map(str, argv)])


@pytest.mark.parametrize("name", ["captured_constants", "vocabulary_table"])
def test_round_trip_pb_to_cpb_to_pb(sources, name, tmp_path, capsys):
    source = sources[name]
    assert convert(source["dir"], "--to", "cpb", "--output", tmp_path / "cpb") == ExitCode.OK
    assert "tensors) equal the source's, bitwise" in capsys.readouterr().out
    assert (tmp_path / "cpb" / "saved_model.cpb").exists() and not (tmp_path / "cpb" / "saved_model.pb").exists()
    assert convert(tmp_path / "cpb", "--to", "pb", "--output", tmp_path / "pb") == ExitCode.OK
    assert sorted(os.listdir(tmp_path / "pb")) == sorted(os.listdir(source["dir"]))
    assert imageformat.read_saved_model(tmp_path / "pb") == imageformat.read_saved_model(source["dir"])
    assert loadability.describe(tmp_path / "pb").stock_tensorflow
    [actual] = servable_proof.run_stock_python([(tmp_path / "pb", source["inputs"])], tmp_path)
    servable_proof.assert_bitwise_equal(actual, source["expected"], f"{name} after .pb -> .cpb -> .pb")
    # TensorFlow's fingerprint reads each form; the program hash is the same model's.
    fingerprints = [tf.saved_model.experimental.read_fingerprint(str(d))
                    for d in (source["dir"], tmp_path / "pb")]
    assert fingerprints[0].graph_def_program_hash == fingerprints[1].graph_def_program_hash


def test_cpb_to_servable_loads_with_stock_tensorflow(sources, tmp_path):
    case = _case("captured_constants")
    obj = case.build("")
    imageformat.save(obj, tmp_path / "image", signatures=case.signatures(obj), max_chunk_size=4096)
    assert (tmp_path / "image" / "saved_model.cpb").exists()
    assert convert(tmp_path / "image", "--to", "servable", "--output", tmp_path / "servable",
                   "--split-threshold", 4096) == ExitCode.OK
    described = loadability.describe(tmp_path / "servable")
    assert described.stock_tensorflow and described.constants_in_checkpoint == 3
    source = sources["captured_constants"]
    [actual] = servable_proof.run_stock_python([(tmp_path / "servable", source["inputs"])], tmp_path)
    servable_proof.assert_bitwise_equal(actual, source["expected"], "captured_constants .cpb -> servable")


@pytest.fixture
def published_cpb(registry_target, tmp_path, monkeypatch):
    """Version 1 of model 'constants' in the target registry: a .cpb."""
    monkeypatch.setenv("TF_BIGEXPORT_STORAGE_OPTIONS", json.dumps(registry_target.storage_options))
    case = _case("captured_constants")
    obj = case.build("")
    imageformat.save(obj, tmp_path / "image", signatures=case.signatures(obj), max_chunk_size=4096)
    registry = registry_target.registry()
    record = registry.publish(str(tmp_path / "image"), "constants", storage.VersionPolicy.parse("next"),
                              {"fingerprint": {"singleprint": "1/2/3/4"}}, job_key="constants.seed")
    return registry, record


def test_published_version_to_servable_is_published_with_its_origin(published_cpb, registry_target, capsys):
    registry, source = published_cpb
    assert source.loadable_by_stock_tensorflow is False
    code = convert(source.uri, "--to", "servable", "--registry", registry_target.uri, "--split-threshold", 4096)
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    assert registry.list_versions("constants") == [1, 2]
    record = registry.read_release_record("constants", 2)
    assert f"published {record.uri} (converted from {source.uri})" in out
    assert record.loadable_by_stock_tensorflow is True and record.loading["form"] == "servable"
    assert record.converted_from == {"uri": source.uri, "model_name": "constants", "version": 1,
                                     "fingerprint": "1/2/3/4", "loadable_by_stock_tensorflow": False}
    assert set(record.signatures) == {"score", "lookup"}
    assert record.signatures["lookup"]["inputs"] == {"ids": {"dtype": "int32", "shape": [None]}}
    assert registry.verify_version("constants", 2) == []
    [row1, row2] = registry.read_index("constants")["versions"]
    assert (row1["loadable_by_stock_tensorflow"], row2["loadable_by_stock_tensorflow"]) == (False, True)


# ---- bad input --------------------------------------------------------------------

def _tf1_saved_model(directory: pathlib.Path) -> None:
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        y = tf.identity(x * tf.constant(2.0), name="y")
        builder = tf.compat.v1.saved_model.Builder(str(directory))
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()


class BodyConstants(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = tf.range(64 * 1024, dtype=tf.float32).numpy() / 3  # a numpy array: part of the function

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
    def __call__(self, ids):
        return tf.gather(self.table, ids)


def _corrupt_cpb(sources, directory: pathlib.Path) -> None:
    assert convert(sources["captured_constants"]["dir"], "--to", "cpb", "--output", directory) == ExitCode.OK
    path = directory / "saved_model.cpb"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


BAD_INPUTS = ["not_a_saved_model", "corrupt_cpb", "pb_past_limit", "tf1_to_servable", "program_too_large"]


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_exits_5_with_one_line_and_publishes_nothing(bad, sources, tmp_path, monkeypatch, capsys):
    source = tmp_path / "source"
    to = "pb"
    if bad == "not_a_saved_model":
        source.mkdir()
        (source / "model.h5").write_bytes(b"keras weights")
        expected = f"convert: {source}: not a SavedModel directory (no saved_model.pb"
    elif bad == "corrupt_cpb":
        _corrupt_cpb(sources, source)
        expected = f"convert: {source / 'saved_model.cpb'}"
    elif bad == "pb_past_limit":  # the 2 GiB limit, scaled down: the same check
        assert convert(sources["captured_constants"]["dir"], "--to", "cpb", "--output", source) == ExitCode.OK
        monkeypatch.setattr(splitter, "PROTOBUF_LIMIT", 10_000)
        # The size is that of the graph this TensorFlow builds (26.9 KiB with 2.21, 26.8 with 2.15).
        size = human_bytes(chunked.read_saved_model(str(source)).ByteSize())
        expected = f"convert: {source / 'saved_model.cpb'}: the merged program proto is {size}, past the 2 GiB"
    elif bad == "tf1_to_servable":
        _tf1_saved_model(source)
        to = "servable"
        expected = f"convert: {source / 'saved_model.pb'}: the servable form does not apply: a TensorFlow 1"
    else:
        tf.saved_model.save(BodyConstants(), str(source))
        monkeypatch.setattr(splitter, "PROTOBUF_LIMIT", 200_000)
        to = "servable"
        expected = f"convert: {source / 'saved_model.pb'}: the servable form does not apply: the program is 26"
    capsys.readouterr()
    registry = tmp_path / "registry"
    for target in (["--output", tmp_path / "out"], ["--registry", registry, "--model", "m"]):
        assert convert(source, "--to", to, *target) == ExitCode.NOT_CONVERTIBLE
        err = capsys.readouterr().err
        assert err.startswith(expected), err
        assert bad != "program_too_large" or " KiB even with 0 large captured constants (0 B) moved" in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert not registry.exists() or storage.Registry(str(registry)).list_versions("m") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_usage_errors_exit_2(sources, tmp_path, capsys):
    source = sources["captured_constants"]["dir"]
    assert convert(source, "--to", "pb") == ExitCode.USAGE
    assert convert(source, "--to", "pb", "--output", tmp_path / "o", "--registry", tmp_path / "r") == ExitCode.USAGE
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert convert(source, "--to", "pb", "--output", tmp_path / "taken") == ExitCode.USAGE
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    with pytest.raises(UsageError, match="invalid choice: 'onnx'"):
        cli.parse_args(["convert", str(source), "--to", "onnx", "--output", "x"])
    shutil.rmtree(tmp_path / "taken")
