"""Tracing: build the model from its factory (or load the job's saved_model), trace
the declared signatures, and compute golden outputs for the sample inputs.

These run in the process that holds the model (trace_and_save_child.py);
the Beam stage around them is trace_and_save.py.
"""
from __future__ import annotations

import dataclasses
import io
import os
import shutil
from typing import Any, Mapping

import numpy as np

from tf_bigexport.transforms.elements import SAVED_SIGNATURE, ExportTask, SignatureTask
from tf_bigexport.transforms.factories import import_factory


# How a signature's inputs reach the traced method: f(a, b), f([a, b]) or f({"a": a, "b": b}).
POSITIONAL, LIST, DICT = "positional", "list", "dict"
INPUT_CONVENTIONS = (POSITIONAL, LIST, DICT)


@dataclasses.dataclass
class TracedModel:
    model: Any
    functions: dict[str, Any]  # signature key -> tf ConcreteFunction
    conventions: dict[str, str] = dataclasses.field(default_factory=dict)  # signature key -> how inputs are passed
    endpoints: dict[str, Any] = dataclasses.field(default_factory=dict)  # signature key -> its tf.function


# Where a saved_model given as a URI is downloaded to, in the job's work directory.
SOURCE_DIR = "source_saved_model"


class FactoryError(RuntimeError):
    """The job's factory raised while building the model, or its saved_model could not be loaded."""


def load_saved_model(task: ExportTask) -> Any:
    """The job's saved_model, loaded (a .cpb too): a local directory in place, a URI downloaded into
    the work directory first, where it stays while the model is saved again (its assets are read then).
    A published version is checked against its release record on the way."""
    from tf_bigexport import imageformat, storage
    source = task.saved_model
    try:
        if storage.is_remote(source):
            directory = os.path.join(task.work_dir, SOURCE_DIR)
            shutil.rmtree(directory, ignore_errors=True)  # what an interrupted attempt left
            storage.download_version(source, directory,
                                     storage.options_for(source, task.registry, task.storage_options))
        else:
            directory = storage.checked_local_version(source)
        # The preflight found saved_model.pb|cpb there; if it went since, TensorFlow's loader says so.
        return imageformat.load(directory)
    except Exception as e:  # noqa: BLE001 - named with the field that led there
        raise FactoryError(f"field 'saved_model': {storage.display_uri(source)}: {last_line(e)}") from e


def build_model(task: ExportTask) -> Any:
    import tensorflow as tf
    if task.saved_model:
        return load_saved_model(task)
    factory = import_factory(task.factory, task.python_path, task.launch_dir)
    try:
        model = factory(**dict(task.factory_kwargs))
    except Exception as e:  # the factory is user code: say which field led there
        raise FactoryError(f"field 'factory': {task.factory!r} raised {type(e).__name__}: {e}") from e
    # keras.export.ExportArchive: its endpoints and variables live on a trackable it saves.
    if type(model).__name__.endswith("ExportArchive") and hasattr(model, "_tf_trackable"):
        model = model._tf_trackable  # pylint: disable=protected-access
    # Keras 3 models are not tf.Modules but are trackable, which is what saving needs.
    if not isinstance(model, (tf.Module, tf.__internal__.tracking.AutoTrackable)):
        raise TypeError(f"factory {task.factory!r} returned {type(model).__name__}, "
                        "expected a tf.Module or Keras model")
    if task.checkpoint:
        # Checkpoints are expected to be written as tf.train.Checkpoint(model=<the model>)
        # (by .save or .write); read() leaves the save counter alone, so both match.
        status = tf.train.Checkpoint(model=model).read(task.checkpoint)
        status.assert_existing_objects_matched()
    return model


def target_of(model: Any, signature: SignatureTask) -> Any:
    if signature.method == "__call__":
        return model
    method = getattr(model, signature.method, None)
    if method is None or not callable(method):
        raise AttributeError(f"signature {signature.key!r}: model {type(model).__name__} "
                             f"has no method {signature.method!r}")
    return method


# Where a Keras functional model holds its input structure (a tensor, list or dict of them):
# Keras 3, and Keras 2 (TensorFlow 2.15's tf.keras).
_KERAS_INPUTS = ("_inputs_struct", "_nested_inputs")


def _keras_inputs(model: Any) -> Any:
    return next((getattr(model, name) for name in _KERAS_INPUTS if getattr(model, name, None) is not None), None)


def _input_structure(model: Any, method: Any, signature: SignatureTask) -> Any:
    """The structure the traced method takes its inputs in, when it says: a Keras functional model's
    (a dict of named inputs, or a list), or that of a tf.function whose input signature is one dict or
    list (e.g. a keras.export.ExportArchive endpoint); else None."""
    if signature.method == "__call__" and (structure := _keras_inputs(model)) is not None:
        return structure
    declared = getattr(method, "input_signature", None)
    return declared[0] if declared is not None and len(declared) == 1 else None


def input_convention(model: Any, method: Any, signature: SignatureTask) -> str:
    """How to pass the declared inputs: as the job declares (inputs_as), else as the method takes them."""
    if signature.inputs_as in INPUT_CONVENTIONS:
        return signature.inputs_as
    structure = _input_structure(model, method, signature)
    if isinstance(structure, Mapping):
        return DICT
    if isinstance(structure, (list, tuple)) and len(structure) > 1:
        return LIST
    return POSITIONAL


def _described(inputs: list[tuple[str, str, list | None]]) -> str:
    """(name, dtype, shape) as "name: dtype[shape], ...", in the order given."""
    return ", ".join(f"{name}: {dtype}{shape}" for name, dtype, shape in inputs)


def _declared(signature: SignatureTask) -> str:
    return _described([(s.name, s.dtype, list(s.shape)) for s in signature.inputs])


def saved_signature(model: Any, signature: SignatureTask) -> Any:
    """The model's own signature `signature.key`, once the declared inputs are known to fit it."""
    import tensorflow as tf
    saved = getattr(model, "signatures", None) or {}
    field = f"field 'signatures.{signature.key}'"
    if signature.key not in saved:
        raise LookupError(f"{field}: the model has no saved signature {signature.key!r} "
                       f"(it has: {', '.join(sorted(saved)) or 'none'})")
    function = saved[signature.key]
    takes = dict(sorted(function.structured_input_signature[1].items()))
    declared = {s.name: tf.TensorSpec(s.shape, tf.as_dtype(s.dtype)) for s in signature.inputs}
    fits = sorted(takes) == sorted(declared) and all(
        takes[name].dtype == spec.dtype and takes[name].shape.is_compatible_with(spec.shape)
        for name, spec in declared.items())
    if not fits:
        shown = _described([(name, spec.dtype.name, spec.shape.as_list() if spec.shape.rank is not None else None)
                            for name, spec in takes.items()])
        raise ValueError(f"{field}: the saved signature takes {shown}; the jobs file declares {_declared(signature)}")
    return function


def trace_signature(model: Any, signature: SignatureTask) -> tuple[Any, Any, str]:
    """(tf.function, its concrete function, input convention) for one declared signature."""
    import tensorflow as tf
    specs = [tf.TensorSpec(shape=list(s.shape), dtype=tf.as_dtype(s.dtype), name=s.name)
             for s in signature.inputs]
    names = [s.name for s in signature.inputs]
    if signature.method == SAVED_SIGNATURE:
        saved = saved_signature(model, signature)  # takes keyword arguments only
        function = tf.function(lambda *args: saved(**dict(zip(names, args))), input_signature=specs)
        return function, function.get_concrete_function(), POSITIONAL
    method = target_of(model, signature)
    convention = input_convention(model, method, signature)
    if convention == DICT:
        structure = _input_structure(model, method, signature)
        expected = sorted(structure) if isinstance(structure, Mapping) else None
        if expected is not None and expected != sorted(names):
            raise ValueError(f"field 'signatures.{signature.key}': the model's {signature.method} takes inputs "
                             f"named {expected}, the jobs file declares {sorted(names)}")
        # As keras.Model.export does: one argument, the dict of inputs; the signature's input keys are its keys.
        function = tf.function(lambda inputs: method(inputs), input_signature=[dict(zip(names, specs))])
    elif convention == LIST:
        function = tf.function(lambda inputs: method(list(inputs)), input_signature=[specs])
    else:
        function = tf.function(lambda *args: method(*args), input_signature=specs)
    try:
        return function, function.get_concrete_function(), convention
    except (TypeError, ValueError) as e:
        # TensorFlow's message starts with "in user code:" and a stack; the reason is its last line.
        how = "" if convention == POSITIONAL else f" (passed as a {convention})"
        message = (f"field 'signatures.{signature.key}': the model's {signature.method} does not accept "
                   f"the declared inputs ({_declared(signature)}){how}: {last_line(e)}")
        try:
            clearer = type(e)(message)
        except Exception:  # noqa: BLE001 - a subclass with another constructor
            clearer = ValueError(message)
        raise clearer from e


def add_serve_endpoint(traced: "TracedModel", task: ExportTask) -> None:
    """Give a Keras model the `serve` endpoint keras.Model.export() gives it (its serving_default call),
    so `loaded.serve(inputs)` works as on a Keras export; only if the model has no `serve` of its own."""
    serving = next((s for s in task.signatures if s.key == "serving_default" and s.method == "__call__"), None)
    model = traced.model
    if serving is None or not any(hasattr(model, name) for name in _KERAS_INPUTS) or hasattr(model, "serve"):
        return
    model.serve = traced.endpoints[serving.key]


def last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def trace_model(task: ExportTask) -> TracedModel:
    return trace_signatures(build_model(task), task)


def trace_signatures(model: Any, task: ExportTask) -> TracedModel:
    traced = TracedModel(model=model, functions={})
    for signature in task.signatures:
        endpoint, concrete, convention = trace_signature(model, signature)
        traced.endpoints[signature.key] = endpoint
        traced.functions[signature.key] = concrete
        traced.conventions[signature.key] = convention
    add_serve_endpoint(traced, task)
    return traced


def named_outputs(outputs: Any) -> dict[str, Any]:
    """Names outputs the way TensorFlow's signature serialization does."""
    if isinstance(outputs, Mapping):
        return dict(outputs)
    if hasattr(outputs, "_asdict"):
        return dict(outputs._asdict())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {f"output_{i}": value for i, value in enumerate(outputs)}


def signature_summary(task: ExportTask, traced: TracedModel) -> dict[str, Any]:
    summary = {}
    for signature in task.signatures:
        outputs = named_outputs(traced.functions[signature.key].structured_outputs)
        summary[signature.key] = {
            "inputs": {s.name: {"dtype": s.dtype, "shape": list(s.shape)} for s in signature.inputs},
            "outputs": {name: {"dtype": t.dtype.name, "shape": t.shape.as_list() if t.shape.rank is not None else None}
                        for name, t in sorted(outputs.items())},
        }
    return summary


def call_signature(function: Any, signature: SignatureTask, inputs: Mapping[str, np.ndarray],
                   convention: str = POSITIONAL) -> dict[str, np.ndarray]:
    import tensorflow as tf
    args = [tf.constant(inputs[s.name], dtype=tf.as_dtype(s.dtype)) for s in signature.inputs]
    if convention == DICT:
        outputs = function(dict(zip((s.name for s in signature.inputs), args)))
    elif convention == LIST:
        outputs = function(args)
    else:
        outputs = function(*args)
    return {name: value.numpy() for name, value in named_outputs(outputs).items()}


def golden_outputs(task: ExportTask, traced: TracedModel) -> dict[str, np.ndarray]:
    """"<signature>/<output>" -> array, for every signature that has sample inputs."""
    golden = {}
    for signature in task.signatures:
        if signature.key in task.sample_inputs:
            outputs = call_signature(traced.functions[signature.key], signature, task.sample_inputs[signature.key],
                                     traced.conventions.get(signature.key, POSITIONAL))
            for name, value in outputs.items():
                golden[f"{signature.key}/{name}"] = value
    return golden


def arrays_to_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """npz bytes without pickles: string arrays become fixed-width bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: (np.asarray(v).astype(bytes) if np.asarray(v).dtype == object else v)
                        for k, v in arrays.items()})
    return buffer.getvalue()


def npz_to_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
