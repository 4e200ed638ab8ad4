"""The servable form: imageformat.save(..., large_constants="variables").

Every seed model (tests/tf_model_zoo.py and the demo models of
pipeline/demo_models.py, traced the way the pipeline traces them) is saved in
the servable form with a small large-constant threshold, so that the zoo's
captured constants of a few KiB move to the checkpoint like the 800 MB ones of
the slow test (tests/test_large_model.py). Each must then load with stock
TensorFlow (Python in a process that never imports this project,
saved_model_cli, and TensorFlow's C++ LoadSavedModel from the pip wheel) and
give outputs bitwise equal to the original model's.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import threading
from typing import Any, Callable

import numpy as np
import pytest
import tensorflow as tf

from tf_bigexport import imageformat
from tf_bigexport.imageformat import chunk_errors, loadability, splitter
from tf_bigexport.pipeline import demo_models
from tf_bigexport.pipeline.graph import to_task
from tf_bigexport.pipeline.jobs import parse_jobs
from tf_bigexport.transforms import trace as trace_stage
import servable_proof
import tf_model_zoo

# Chunk size whose large-constant threshold (a quarter of it) catches the zoo's 2-4 KiB constants.
SMALL_CHUNK = 4096
THRESHOLD = splitter.large_constant_bytes(SMALL_CHUNK)


@dataclasses.dataclass
class SeedModel:
    name: str
    build: Callable[[pathlib.Path], tuple[Any, Any]]  # workdir -> (object, signatures argument)
    moves_constants: bool


def _zoo(case: tf_model_zoo.ModelCase) -> SeedModel:
    def build(workdir: pathlib.Path) -> tuple[Any, Any]:
        obj = case.build(str(workdir))
        return obj, case.signatures(obj)
    return SeedModel(f"zoo-{case.name}", build, case.name == "captured_constants")


def _demo(job: dict[str, Any], moves_constants: bool) -> SeedModel:
    def build(workdir: pathlib.Path) -> tuple[Any, Any]:
        (spec,) = parse_jobs({"registry": str(workdir / "registry"), "jobs": [job]})
        traced = trace_stage.trace_model(to_task(spec, work_root=str(workdir), run_id="test"))
        return traced.model, traced.functions
    return SeedModel(f"demo-{job['name']}", build, moves_constants)


def seed_models() -> list[SeedModel]:
    jobs = {job["name"]: job for job in demo_models.demo_jobs("unused")["jobs"]}
    # The slow test's model (3 x 800 MB) at 3 x 1 MiB: the same code path.
    large = dict(demo_models.demo_jobs("unused", large=True)["jobs"][-1],
                 factory_kwargs={"count": 3, "megabytes_each": 1})
    return ([_zoo(case) for case in tf_model_zoo.CASES]
            + [_demo(jobs["mobilenet"], False), _demo(jobs["vocab"], False), _demo(jobs["split"], True),
               _demo(large, True)])


@dataclasses.dataclass
class Saved:
    model: SeedModel
    servable_dir: pathlib.Path
    graph_dir: pathlib.Path
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    saved = {}
    for model in seed_models():
        workdir = tmp_path_factory.mktemp(model.name)
        obj, signatures = model.build(workdir)
        inputs, expected = servable_proof.original_outputs(obj, signatures)
        servable_dir, graph_dir = workdir / "servable", workdir / "graph"
        imageformat.save(obj, servable_dir, signatures=signatures, max_chunk_size=SMALL_CHUNK,
                         large_constants="variables")
        imageformat.save(obj, graph_dir, signatures=signatures, max_chunk_size=SMALL_CHUNK)
        saved[model.name] = Saved(model, servable_dir, graph_dir, inputs, expected)
    return saved


MODEL_NAMES = [model.name for model in seed_models()]


def _large_graph_constants(saved_model: Any) -> list[str]:
    return [node.name for meta_graph in saved_model.meta_graphs for node in meta_graph.graph_def.node
            if node.op == "Const" and len(node.attr["value"].tensor.tensor_content) >= THRESHOLD]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_servable_form_is_a_plain_pb(saved_models: dict[str, Saved], name: str) -> None:
    saved = saved_models[name]
    names = set(os.listdir(saved.servable_dir))
    assert "saved_model.pb" in names and "saved_model.cpb" not in names
    described = loadability.describe(saved.servable_dir)
    assert described.stock_tensorflow and described.form == loadability.SERVABLE
    program = imageformat.read_saved_model(saved.servable_dir)
    assert _large_graph_constants(program) == []
    if saved.model.moves_constants:
        assert described.constants_in_checkpoint > 0
        assert _large_graph_constants(imageformat.read_saved_model(saved.graph_dir))  # they were there
        assert "restored from the checkpoint" in described.reason
    else:
        assert described.constants_in_checkpoint == 0


def test_stock_python_loads_every_seed_model_bitwise(saved_models: dict[str, Saved],
                                                     tmp_path: pathlib.Path) -> None:
    models = list(saved_models.values())
    outputs = servable_proof.run_stock_python([(s.servable_dir, s.inputs) for s in models], tmp_path)
    for saved, actual in zip(models, outputs):
        servable_proof.assert_bitwise_equal(actual, saved.expected, f"{saved.model.name} (tf.saved_model.load)")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_saved_model_cli_runs_every_signature_bitwise(saved_models: dict[str, Saved], name: str,
                                                      tmp_path: pathlib.Path) -> None:
    saved = saved_models[name]
    actual = servable_proof.run_saved_model_cli(saved.servable_dir, saved.inputs, tmp_path)
    servable_proof.assert_bitwise_equal(actual, saved.expected, f"{name} (saved_model_cli run)")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cpp_load_saved_model_runs_every_signature_bitwise(saved_models: dict[str, Saved], name: str, cc_build,
                                                           tmp_path: pathlib.Path) -> None:
    saved = saved_models[name]
    actual = servable_proof.run_cc_stock_loader(cc_build, saved.servable_dir, saved.inputs, tmp_path)
    servable_proof.assert_bitwise_equal(actual, saved.expected, f"{name} (C++ tensorflow::LoadSavedModel)")


def _variables(export_dir: pathlib.Path) -> dict[str, list[int]]:
    return dict(tf.train.list_variables(str(export_dir / "variables" / "variables")))


def _trainable_flags(export_dir: pathlib.Path) -> dict[str, bool]:
    object_graph = imageformat.read_saved_model(export_dir).meta_graphs[0].object_graph_def
    return {node.variable.name: node.variable.trainable for node in object_graph.nodes
            if node.WhichOneof("kind") == "variable"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_user_variables_keep_checkpoint_keys_and_trainable_flags(saved_models: dict[str, Saved], name: str) -> None:
    saved = saved_models[name]
    servable, graph = _variables(saved.servable_dir), _variables(saved.graph_dir)
    moved = {key: shape for key, shape in servable.items() if key.startswith("_captured_constants/")}
    assert {key: shape for key, shape in servable.items() if key not in moved} == graph
    assert bool(moved) == saved.model.moves_constants
    flags = _trainable_flags(saved.servable_dir)
    moved_flags = {key: value for key, value in flags.items() if key.startswith("captured_constant_")}
    assert {key: value for key, value in flags.items() if key not in moved_flags} == _trainable_flags(saved.graph_dir)
    assert len(moved_flags) == len(moved) and not any(moved_flags.values())


def test_imageformat_load_reads_the_servable_form(saved_models: dict[str, Saved]) -> None:
    saved = saved_models["zoo-captured_constants"]
    loaded = imageformat.load(saved.servable_dir)
    case = next(c for c in tf_model_zoo.CASES if c.name == "captured_constants")
    original = case.call_original(case.build(""))
    actual = case.call_loaded(loaded)
    assert sorted(actual) == sorted(original)
    for key, value in original.items():
        assert actual[key].tobytes() == value.tobytes(), key
    assert [v.trainable for v in loaded._captured_constants] == [False, False, False]  # pylint: disable=protected-access
    assert loaded.bias.trainable


class BodyConstants(tf.Module):
    """Numpy arrays used inside a tf.function: compiled into the function, not captured."""

    def __init__(self) -> None:
        super().__init__()
        self.table = np.random.default_rng(3).standard_normal(64 * 1024).astype(np.float32)  # 256 KiB

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
    def __call__(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, ids)


def test_program_too_large_even_without_constants_fails_before_writing(tmp_path: pathlib.Path) -> None:
    export_dir = tmp_path / "servable"
    with pytest.raises(chunk_errors.ProgramTooLargeError) as raised:
        imageformat.save(BodyConstants(), export_dir, large_constants="variables", max_program_bytes=100_000)
    message = str(raised.value)
    assert message.startswith(f"{export_dir}: cannot save the program is ")
    assert "0 large captured constants" in message and "__inference___call__" in message
    assert "format: image" in message
    assert not export_dir.exists() or not {"saved_model.pb", "saved_model.cpb", "variables"} & set(
        os.listdir(export_dir))
    # The same model fits the image format.
    imageformat.save(BodyConstants(), tmp_path / "image", max_chunk_size=100_000)
    assert (tmp_path / "image" / "saved_model.cpb").exists()


def _one_constant_model(elements: int) -> tf.Module:
    values = tf.constant(np.arange(elements, dtype=np.float32) / 7)

    class OneConstant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        def __call__(self, ids: tf.Tensor) -> tf.Tensor:
            return tf.gather(values, ids)

    return OneConstant()


def test_constant_past_the_tensor_proto_limit_moves_instead_of_failing(tmp_path: pathlib.Path) -> None:
    # Same path as a constant past 2 GiB: a limit TensorProtos cannot pass, variables can.
    model = _one_constant_model(4096)
    with pytest.raises(chunk_errors.ConstantTooLargeError):
        imageformat.save(model, tmp_path / "graph", max_constant_bytes=8192)
    imageformat.save(model, tmp_path / "servable", max_constant_bytes=8192, max_chunk_size=SMALL_CHUNK,
                     large_constants="variables")
    loaded = tf.saved_model.load(str(tmp_path / "servable"))
    ids = tf.constant([0, 4095], tf.int32)
    assert loaded(ids).numpy().tobytes() == model(ids).numpy().tobytes()


def test_user_tensors_carry_no_marks_and_parallel_saves_keep_their_own_variables(tmp_path: pathlib.Path) -> None:
    model = _one_constant_model(1 << 18)  # 1 MiB: the default threshold
    (capture,) = model.__call__.get_concrete_function().captured_inputs
    errors: list[BaseException] = []

    def save(index: int) -> None:
        try:
            imageformat.save(model, tmp_path / f"servable{index}", large_constants="variables")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not hasattr(capture, "_cached_variable")
    ids = tf.constant([3, 1 << 17], tf.int32)
    for index in range(3):
        described = loadability.describe(tmp_path / f"servable{index}")
        assert (described.constants_in_checkpoint, described.constant_bytes) == (1, 1 << 20)
        loaded = tf.saved_model.load(str(tmp_path / f"servable{index}"))
        assert loaded(ids).numpy().tobytes() == model(ids).numpy().tobytes()


def test_bad_arguments(tmp_path: pathlib.Path) -> None:
    model = _one_constant_model(16)
    with pytest.raises(ValueError, match="large_constants must be one of 'graph', 'variables'"):
        imageformat.save(model, tmp_path / "a", large_constants="checkpoint")
    with pytest.raises(ValueError, match="max_program_bytes applies to large_constants='variables' only"):
        imageformat.save(model, tmp_path / "b", max_program_bytes=1000)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
