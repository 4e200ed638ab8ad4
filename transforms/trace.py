"""Tracing: build the model from its factory, trace the declared signatures,
and compute golden outputs for the sample inputs.

These run in the process that holds the model (trace_and_save_child.py);
the Beam stage around them is trace_and_save.py.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Any, Mapping

import numpy as np

from tf_bigexport.transforms.elements import ExportTask, SignatureTask
from tf_bigexport.transforms.factories import import_factory


@dataclasses.dataclass
class TracedModel:
    model: Any
    functions: dict[str, Any]  # signature key -> tf ConcreteFunction


class FactoryError(RuntimeError):
    """The job's factory raised while building the model."""


def build_model(task: ExportTask) -> Any:
    import tensorflow as tf
    factory = import_factory(task.factory, task.python_path, task.launch_dir)
    try:
        model = factory(**dict(task.factory_kwargs))
    except Exception as e:  # the factory is user code: say which field led there
        raise FactoryError(f"field 'factory': {task.factory!r} raised {type(e).__name__}: {e}") from e
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


def trace_signature(model: Any, signature: SignatureTask) -> Any:
    """The concrete function for one declared signature (inputs passed positionally)."""
    import tensorflow as tf
    if signature.method == "__call__":
        method = model
    else:
        method = getattr(model, signature.method, None)
        if method is None or not callable(method):
            raise AttributeError(f"signature {signature.key!r}: model {type(model).__name__} "
                                 f"has no method {signature.method!r}")
    specs = [tf.TensorSpec(shape=list(s.shape), dtype=tf.as_dtype(s.dtype), name=s.name)
             for s in signature.inputs]
    function = tf.function(lambda *args: method(*args), input_signature=specs)
    try:
        return function.get_concrete_function()
    except (TypeError, ValueError) as e:
        # TensorFlow's message starts with "in user code:" and a stack; the reason is its last line.
        declared = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in signature.inputs)
        message = (f"field 'signatures.{signature.key}': the model's {signature.method} does not accept "
                   f"the declared inputs ({declared}): {last_line(e)}")
        try:
            clearer = type(e)(message)
        except Exception:  # noqa: BLE001 - a subclass with another constructor
            clearer = ValueError(message)
        raise clearer from e


def last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def trace_model(task: ExportTask) -> TracedModel:
    model = build_model(task)
    return TracedModel(model=model, functions={s.key: trace_signature(model, s) for s in task.signatures})


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


def call_signature(function: Any, signature: SignatureTask, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf
    args = [tf.constant(inputs[s.name], dtype=tf.as_dtype(s.dtype)) for s in signature.inputs]
    return {name: value.numpy() for name, value in named_outputs(function(*args)).items()}


def golden_outputs(task: ExportTask, traced: TracedModel) -> dict[str, np.ndarray]:
    """"<signature>/<output>" -> array, for every signature that has sample inputs."""
    golden = {}
    for signature in task.signatures:
        if signature.key in task.sample_inputs:
            outputs = call_signature(traced.functions[signature.key], signature, task.sample_inputs[signature.key])
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
