"""The C++ loader (cc/), built with g++ against the TensorFlow wheel.

* Every signature of the seed models (tests/tf_model_zoo.py, pipeline/demo_models.py),
  saved as saved_model.cpb, gives in C++ the outputs Python's imageformat.load gives;
  so does a .cpb whose large constants are separate BYTES chunks.
* A plain saved_model.pb loads with our loader and with TensorFlow's stock
  LoadSavedModel (the runner's --loader stock); the stock one refuses a .cpb.
* Corrupt and hostile .cpb files (bad bytes, truncation, forged ChunkMetadata with
  valid hashes, some of which crash TensorFlow's own Merger) give exit status 3 and a
  message naming the file: never a signal.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import imageformat
from tf_bigexport.imageformat import tf_support
from tf_bigexport.imageformat.proto import chunk_pb2
from tf_bigexport.imageformat.riegeli import RecordReader, RecordWriter
from tf_bigexport.pipeline import demo_models

sys.path.insert(0, os.path.dirname(__file__))
import tf_model_zoo  # noqa: E402

# Small enough that every seed model's proto is split into many chunks.
MAX_CHUNK_SIZE = 4096
TOKENS = [b"token1", b"token7", b"apple", b"cherry", b"not-in-vocab"]
EXIT_LOAD_FAILED, EXIT_BAD_INPUT, EXIT_USAGE = 3, 4, 2


def save_cpb(obj: Any, export_dir: Path, signatures: Any, max_chunk_size: int = MAX_CHUNK_SIZE) -> Path:
    imageformat.save(obj, str(export_dir), signatures=signatures, max_chunk_size=max_chunk_size)
    assert (export_dir / "saved_model.cpb").exists()
    return export_dir


def export_keras_cpb(model: Any, export_dir: Path, input_signature: list) -> Path:
    """A Keras 3 model the way Keras exports it for serving (ExportArchive), as .cpb.

    tf.saved_model.save of a Keras 3 model gives a graph whose serving function
    reads variable handles the restore op never fills: session-based loaders
    (TensorFlow's C++ LoadSavedModel, saved_model_cli run) then fail with "Could
    not find variable" on the plain .pb too (keras-team/keras#19274).
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track_and_add_endpoint("serve", model, input_signature)
    with tf_support.image_format_saving(max_chunk_size=MAX_CHUNK_SIZE):
        archive.write_out(str(export_dir), options=tf_support.image_format_options(None), verbose=False)
    assert (export_dir / "saved_model.cpb").exists()
    return export_dir


def _saved_by_case(case: tf_model_zoo.ModelCase) -> Callable[[Path, Path], Path]:
    def save(export_dir: Path, workdir: Path) -> Path:
        obj = case.build(str(workdir))
        if isinstance(obj, tf.keras.Model):
            return export_keras_cpb(obj, export_dir, [tf.TensorSpec([None, *obj.input_shape[1:]], obj.inputs[0].dtype)])
        return save_cpb(obj, export_dir, case.signatures(obj))
    return save


def _demo_mobilenet(export_dir: Path, workdir: Path) -> Path:
    return export_keras_cpb(demo_models.mobilenet_classifier(), export_dir,
                            [tf.TensorSpec([None, 96, 96, 3], tf.float32, name="images")])


def _demo_vocab(export_dir: Path, workdir: Path) -> Path:
    module = demo_models.vocabulary_module()
    return save_cpb(module, export_dir, {
        "serving_default": tf.function(module.__call__, input_signature=[tf.TensorSpec([None], tf.string)]),
        "score": tf.function(module.score, input_signature=[tf.TensorSpec([None, None], tf.string)])})


def _demo_split(export_dir: Path, workdir: Path) -> Path:
    module = demo_models.split_constants()
    return save_cpb(module, export_dir, tf.function(
        module.__call__, input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")]))


# name -> save(export_dir, workdir): every seed model written as saved_model.cpb.
SEED_MODELS = {case.name: _saved_by_case(case) for case in tf_model_zoo.CASES}
SEED_MODELS.update(demo_mobilenet=_demo_mobilenet, demo_vocab=_demo_vocab, demo_split=_demo_split)


def sample_inputs(function: Any, seed: int) -> dict[str, np.ndarray]:
    """Inputs for a signature function from its TensorSpecs (unknown dimensions: 2)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, spec in function.structured_input_signature[1].items():
        shape = [2] if spec.shape.rank is None else [d if d is not None else 2 for d in spec.shape]
        dtype = spec.dtype
        if dtype == tf.string:
            value = np.array(TOKENS, dtype=bytes)[rng.integers(0, len(TOKENS), size=shape)]
        elif dtype == tf.bool:
            value = rng.random(shape) < 0.5
        elif dtype.is_integer:
            value = rng.integers(0, 6, size=shape).astype(dtype.as_numpy_dtype)
        else:
            value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        inputs[name] = np.asarray(value)
    return inputs


def python_outputs(loaded: Any, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs = loaded.signatures[key](**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def assert_same_outputs(cc: dict[str, np.ndarray], python: dict[str, np.ndarray], where: str) -> None:
    assert sorted(cc) == sorted(python), where
    for name, expected in python.items():
        got = cc[name]
        if expected.dtype == object:  # tf.string outputs: bytes objects in Python, 'S' arrays from .npy
            expected = expected.astype(bytes)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (where, name, got.dtype, expected.dtype)
        np.testing.assert_array_equal(got, expected, err_msg=f"{where}: output {name}")


@pytest.fixture(scope="module")
def seed_versions(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seed-cpb")
    versions = {}
    for name, save in SEED_MODELS.items():
        workdir = root / f"{name}-work"
        workdir.mkdir()
        versions[name] = save(root / name, workdir)
    return versions


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_every_signature_of_a_seed_model_saved_as_cpb_matches_python(cc_build, seed_versions, name, tmp_path):
    export_dir = seed_versions[name]
    loaded = imageformat.load(str(export_dir))
    shown = cc_build.show(export_dir)
    assert sorted(shown) == sorted(loaded.signatures), name
    for index, key in enumerate(sorted(loaded.signatures)):
        function = loaded.signatures[key]
        assert sorted(shown[key]["inputs"]) == sorted(function.structured_input_signature[1])
        inputs = sample_inputs(function, seed=index)
        cc = cc_build.call(export_dir, key, inputs, tmp_path / key)
        assert_same_outputs(cc, python_outputs(loaded, key, inputs), f"{name}/{key}")


def test_cpb_with_large_constants_as_bytes_chunks_matches_python(cc_build, tmp_path):
    model = demo_models.large_constants(count=3, megabytes_each=2)
    export_dir = save_cpb(model, tmp_path / "large", tf.function(
        model.__call__, input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")]), max_chunk_size=1 << 20)
    with open(export_dir / "saved_model.cpb", "rb") as f:
        metadata = chunk_pb2.ChunkMetadata.FromString(list(RecordReader(f))[-1])
    assert sum(info.type == chunk_pb2.ChunkInfo.BYTES for info in metadata.chunks) == 3
    inputs = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    cc = cc_build.call(export_dir, "serving_default", inputs, tmp_path / "call")
    assert_same_outputs(cc, python_outputs(imageformat.load(str(export_dir)), "serving_default", inputs), "large")


def test_plain_pb_loads_with_our_loader_and_with_stock_tensorflow(cc_build, tmp_path):
    model = tf_model_zoo.Scaler()
    tf.saved_model.save(model, str(tmp_path / "pb"), signatures=model.__call__)
    other = tf_model_zoo.Scaler()
    save_cpb(other, tmp_path / "cpb", other.__call__)
    inputs = {"x": np.arange(12, dtype=np.float32).reshape(4, 3)}
    expected = python_outputs(tf.saved_model.load(str(tmp_path / "pb")), "serving_default", inputs)
    for loader in ("tf_bigexport", "stock"):
        got = cc_build.call(tmp_path / "pb", "serving_default", inputs, tmp_path / loader, "--loader", loader)
        assert_same_outputs(got, expected, f"pb/{loader}")
    refused = cc_build.run("--export_dir", str(tmp_path / "cpb"), "--show", "--loader", "stock")
    assert refused.returncode == EXIT_LOAD_FAILED
    assert "Could not find SavedModel .pb or .pbtxt" in refused.stderr


# ---- corrupt and hostile .cpb files -------------------------------------------------

def _records(export_dir: Path) -> list[bytes]:
    with open(export_dir / "saved_model.cpb", "rb") as f:
        return list(RecordReader(f))


def _rewrite(export_dir: Path, records: list[bytes]) -> None:
    out = io.BytesIO()
    with RecordWriter(out) as writer:
        for record in records:
            writer.write_record(record)
    (export_dir / "saved_model.cpb").write_bytes(out.getvalue())


def _forge_metadata(edit: Callable[[chunk_pb2.ChunkMetadata], None]) -> Callable[[Path], None]:
    def corrupt(export_dir: Path) -> None:
        records = _records(export_dir)
        metadata = chunk_pb2.ChunkMetadata.FromString(records[-1])
        edit(metadata)
        _rewrite(export_dir, records[:-1] + [metadata.SerializeToString()])
    return corrupt


def _indexed_field(metadata: chunk_pb2.ChunkMetadata) -> chunk_pb2.ChunkedField:
    return next(f for f in metadata.message.chunked_fields if any(t.HasField("index") for t in f.field_tag))


def _set_last_index(value: int) -> Callable[[chunk_pb2.ChunkMetadata], None]:
    def edit(metadata: chunk_pb2.ChunkMetadata) -> None:
        [*_, last] = [t for t in _indexed_field(metadata).field_tag if t.HasField("index")]
        last.index = value
    return edit


def _flip_byte(offset_from_end: int) -> Callable[[Path], None]:
    def corrupt(export_dir: Path) -> None:
        path = export_dir / "saved_model.cpb"
        data = bytearray(path.read_bytes())
        data[len(data) - offset_from_end] ^= 0x40
        path.write_bytes(bytes(data))
    return corrupt


def _truncate(export_dir: Path) -> None:
    path = export_dir / "saved_model.cpb"
    path.write_bytes(path.read_bytes()[:-100])


def _reuse_chunk(metadata: chunk_pb2.ChunkMetadata) -> None:
    metadata.message.chunked_fields[1].message.chunk_index = metadata.message.chunked_fields[0].message.chunk_index


def _scalar_leaf(metadata: chunk_pb2.ChunkMetadata) -> None:
    field = metadata.message.chunked_fields[-1]
    del field.field_tag[:]
    field.field_tag.add(field=1)  # SavedModel.saved_model_schema_version, an int64


HOSTILE = {
    # Bytes: Riegeli's hashes catch them.
    "not_riegeli": (lambda d: (d / "saved_model.cpb").write_bytes(b"\x00" * 4096), "not a Riegeli/records file"),
    "truncated": (_truncate, "truncated"),
    "flipped_metadata_byte": (_flip_byte(10), "saved_model.cpb"),
    "flipped_chunk_byte": (_flip_byte(2000), "saved_model.cpb"),
    # Forged metadata, hashes valid. TensorFlow 2.21's Merger segfaults on the first.
    "chunk_index_out_of_range": (_forge_metadata(
        lambda m: setattr(m.message.chunked_fields[0].message, "chunk_index", 1 << 40)), "only"),
    "chunk_used_twice": (_forge_metadata(_reuse_chunk), "used twice"),
    "index_past_int": (_forge_metadata(_set_last_index((1 << 32) - 3)), "past what TensorFlow's merger can address"),
    # Past the end of its repeated field: only the merge finds it (TensorFlow throws).
    "index_skips_ahead": (_forge_metadata(_set_last_index(5000)), "Can't access index"),
    "scalar_leaf": (_forge_metadata(_scalar_leaf), "scalar field"),
    "unknown_field_number": (_forge_metadata(lambda m: setattr(
        m.message.chunked_fields[0].field_tag[0], "field", 999)), "no field number 999"),
    "newer_merger_version": (_forge_metadata(lambda m: setattr(m.version, "join_version", 7)), "merger version 7"),
}


@pytest.fixture(scope="module")
def scaler_cpb(tmp_path_factory) -> Path:
    model = tf_model_zoo.Scaler()
    return save_cpb(model, tmp_path_factory.mktemp("scaler") / "cpb", model.__call__, max_chunk_size=200)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_corrupt_or_hostile_cpb_gives_an_error_status_not_a_crash(cc_build, scaler_cpb, tmp_path, case):
    corrupt, expected = HOSTILE[case]
    export_dir = tmp_path / "version"
    shutil.copytree(scaler_cpb, export_dir)
    corrupt(export_dir)
    done = cc_build.run("--export_dir", str(export_dir), "--show")
    assert done.returncode == EXIT_LOAD_FAILED, f"exit {done.returncode} (negative: killed by a signal)\n{done.stderr}"
    message = done.stderr.strip().splitlines()[-1]
    assert str(export_dir / "saved_model.cpb") in message and expected in message, message


def test_forged_chunk_sizes_are_no_allocation(cc_build, scaler_cpb, tmp_path):
    """TensorFlow's Merger allocates ChunkInfo.size bytes before reading a record
    (std::bad_alloc at 2**62); the loader does not pass the sizes on."""
    export_dir = tmp_path / "version"
    shutil.copytree(scaler_cpb, export_dir)
    _forge_metadata(lambda m: [info.__setattr__("size", 1 << 62) for info in m.chunks])(export_dir)
    inputs = {"x": np.ones((1, 3), dtype=np.float32)}
    got = cc_build.call(export_dir, "serving_default", inputs, tmp_path / "call")
    assert_same_outputs(got, python_outputs(imageformat.load(str(scaler_cpb)), "serving_default", inputs), "sizes")


# ---- the runner's own errors ----------------------------------------------------------

def test_runner_reports_bad_inputs_with_distinct_exit_codes(cc_build, scaler_cpb, tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.ones((2, 3), dtype=np.float32))
    np.save(tmp_path / "x64.npy", np.ones((2, 3), dtype=np.float64))
    np.save(tmp_path / "wide.npy", np.ones((2, 5), dtype=np.float32))
    base = ["--export_dir", str(scaler_cpb)]
    cases = [
        ([], EXIT_BAD_INPUT, "needs input 'x'"),
        (["--signature", "nope", "--input", f"x={good}"], EXIT_BAD_INPUT, "no signature 'nope' (signatures: serving_default)"),
        (["--input", f"y={good}"], EXIT_BAD_INPUT, "has no input 'y' (inputs: x)"),
        (["--input", f"x={tmp_path / 'x64.npy'}"], EXIT_BAD_INPUT, "is float64, the signature wants float32"),
        (["--input", f"x={tmp_path / 'wide.npy'}"], EXIT_BAD_INPUT, "the signature wants [None, 3]"),
        (["--input", f"x={tmp_path / 'missing.npy'}"], EXIT_BAD_INPUT, "missing.npy"),
        (["--loader", "fast"], EXIT_USAGE, "--loader is tf_bigexport or stock"),
    ]
    for args, code, message in cases:
        done = cc_build.run(*base, *args)
        assert done.returncode == code and message in done.stderr, (args, done.returncode, done.stderr)
    missing = cc_build.run("--export_dir", str(tmp_path / "nothing-here"), "--show")
    assert missing.returncode == EXIT_LOAD_FAILED and "nothing-here" in missing.stderr


# ---- many forged ChunkMetadata, one process ------------------------------------------

FORGED_CASES = 150


def test_forged_metadata_never_crashes_the_cc_reader(cc_build, scaler_cpb, tmp_path):
    """The fuzz tests' metadata forgeries (test_fuzz_format._forge_metadata: chunk indices
    out of range or reused, cycles, random field paths, huge sizes and offsets, deep
    nesting, ...) with valid hashes, all read by one tf_bigexport_read process: a crash
    kills it; every directory gets its line, ok or an error naming the file."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_fuzz_format import _forge_metadata

    records = _records(scaler_cpb)
    forged: list[bytes] = []

    @settings(max_examples=FORGED_CASES, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def collect(data):
        forged.append(_forge_metadata(data, chunk_pb2.ChunkMetadata.FromString(records[-1])))

    collect()
    dirs = []
    for index, metadata in enumerate(dict.fromkeys(forged)):  # distinct forgeries only
        export_dir = tmp_path / f"forged-{index}"
        shutil.copytree(scaler_cpb, export_dir)
        _rewrite(export_dir, records[:-1] + [metadata])
        dirs.append(export_dir)
    done = subprocess.run([str(cc_build.reader), *map(str, dirs)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode in (0, EXIT_LOAD_FAILED), f"killed by a signal? exit {done.returncode}\n{done.stderr[-3000:]}"
    lines = done.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [str(d) for d in dirs]
    errors = [line for line in lines if ": error: " in line]
    assert all(f"{d}/saved_model.cpb" in line for d, line in zip(dirs, lines) if ": error: " in line)
    assert len(dirs) > 50 and len(errors) > len(dirs) // 2  # most forgeries are refused


def test_wheels_without_the_mergers_headers_are_named(tmp_path):
    """cc/tf_flags.py --check: what `make cc` and these tests rely on to refuse TensorFlow 2.16-2.19."""
    import runpy
    flags = runpy.run_path(str(Path(__file__).resolve().parents[1] / "cc" / "tf_flags.py"))
    splitter = tmp_path / "tensorflow" / "include" / "tensorflow" / "tools" / "proto_splitter"
    check = flags["missing_headers"]
    check.__globals__["tensorflow_dir"] = lambda: str(tmp_path / "tensorflow")
    assert check() == ["tensorflow/tools/proto_splitter/merge.h", "tensorflow/tools/proto_splitter/chunk.pb.h"]
    splitter.mkdir(parents=True)
    (splitter / "chunk.pb.h").write_text('#include <string>\n')
    (splitter / "merge.h").write_text('#include "riegeli/bytes/fd_reader.h"  // from @riegeli\n'
                                      '#include "tensorflow/tools/proto_splitter/chunk.pb.h"\n')
    assert check() == ["riegeli/bytes/fd_reader.h (included by tensorflow/tools/proto_splitter/merge.h)"]
