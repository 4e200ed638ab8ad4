"""RunInference model handlers for published versions (.pb, .cpb, the servable form).

The counterparts of Beam's TFModelHandlerNumpy / TFModelHandlerTensor
(apache_beam/ml/inference/tensorflow_inference.py) with the same knobs where
they apply (batch sizes, inference_fn, large_model, model_copies, env_vars),
plus ``signature`` and the storage URI's options. Keras-only knobs (model_type,
create_model_fn, custom_weights, load_model_args) have no meaning for a
SavedModel version and are left out. Keyed examples: wrap a handler in Beam's
KeyedModelHandler.

Loading and sharing are Beam's: RunInference loads the model once per worker
process through its shared handle and every thread's DoFn uses that copy;
``large_model=True`` or ``model_copies=N`` makes Beam load it in a separate
process per machine and proxy the calls (share_model_across_processes).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Generic, Iterable, Optional, Sequence, TypeVar

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference import utils
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from tf_bigexport.inference import version_cache
from tf_bigexport.inference.loaded_version import LoadedVersion, load_version

ExampleT = TypeVar("ExampleT")
# (model, batch, inference_args, model_id) -> predictions, as Beam's TensorInferenceFn.
InferenceFn = Callable[[LoadedVersion, Sequence[Any], dict[str, Any], Optional[str]], Iterable[PredictionResult]]


def default_numpy_inference_fn(model: LoadedVersion, batch: Sequence[Any], inference_args: dict[str, Any],
                               model_id: Optional[str] = None) -> Iterable[PredictionResult]:
    """Stacks the examples, runs the signature; each PredictionResult holds a dict of numpy outputs.

    ``inference_args`` are extra (unbatched) keyword inputs of the signature.
    """
    outputs = model(**model.batch_inputs(batch, np.stack), **inference_args)
    return utils._convert_to_result(batch, {name: value.numpy() for name, value in outputs.items()}, model_id)


def default_tensor_inference_fn(model: LoadedVersion, batch: Sequence[Any], inference_args: dict[str, Any],
                                model_id: Optional[str] = None) -> Iterable[PredictionResult]:
    """As default_numpy_inference_fn, for tf.Tensor examples and outputs."""
    outputs = model(**model.batch_inputs(batch, tf.stack), **inference_args)
    return utils._convert_to_result(batch, dict(outputs), model_id)


class _SavedModelHandler(ModelHandler[ExampleT, PredictionResult, LoadedVersion], Generic[ExampleT]):
    _metrics_namespace = "TFBigExport_SavedModel"

    def __init__(
            self,
            model_uri: str,
            *,
            signature: str = "serving_default",
            tags: str | Sequence[str] | None = None,
            storage_options: dict | None = None,
            cache_dir: str | os.PathLike | None = None,
            cached_versions: int = version_cache.DEFAULT_KEEP,
            inference_fn: InferenceFn,
            min_batch_size: Optional[int] = None,
            max_batch_size: Optional[int] = None,
            max_batch_duration_secs: Optional[int] = None,
            large_model: bool = False,
            model_copies: Optional[int] = None,
            max_batch_weight: Optional[int] = None,
            element_size_fn: Optional[Callable[[Any], int]] = None,
            batch_length_fn: Optional[Callable[[Any], int]] = None,
            batch_bucket_boundaries: Optional[list[int]] = None,
            **kwargs: Any) -> None:
        super().__init__(
            min_batch_size=min_batch_size, max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs, max_batch_weight=max_batch_weight,
            element_size_fn=element_size_fn, batch_length_fn=batch_length_fn,
            batch_bucket_boundaries=batch_bucket_boundaries, large_model=large_model,
            model_copies=model_copies, **kwargs)
        self._model_uri = model_uri
        self._signature = signature
        self._tags = tags
        self._storage_options = storage_options
        self._cache_dir = cache_dir
        self._cached_versions = cached_versions
        self._inference_fn = inference_fn

    def load_model(self) -> LoadedVersion:
        """Downloads the version if it is remote (once per machine: see version_cache) and loads it."""
        return load_version(self._model_uri, signature=self._signature, tags=self._tags,
                            storage_options=self._storage_options, cache_dir=self._cache_dir,
                            cached_versions=self._cached_versions)

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        self._model_uri = model_path or self._model_uri

    def run_inference(self, batch: Sequence[ExampleT], model: LoadedVersion,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        return self._inference_fn(model, batch, inference_args or {}, self._model_uri)

    def get_num_bytes(self, batch: Sequence[ExampleT]) -> int:
        return sum(_nbytes(example) for example in batch)

    def get_metrics_namespace(self) -> str:
        return self._metrics_namespace


class SavedModelHandlerNumpy(_SavedModelHandler[Any]):
    """Examples are numpy arrays (or dicts of input name to array); outputs numpy.

    ``RunInference(SavedModelHandlerNumpy("gs://bucket/models/m/3"))``
    """

    _metrics_namespace = "TFBigExport_SavedModel_Numpy"

    def __init__(self, model_uri: str, *, inference_fn: InferenceFn = default_numpy_inference_fn,
                 **kwargs: Any) -> None:
        super().__init__(model_uri, inference_fn=inference_fn, **kwargs)


class SavedModelHandlerTensor(_SavedModelHandler[Any]):
    """Examples are tf.Tensor (or dicts of input name to tensor); outputs tf.Tensor."""

    _metrics_namespace = "TFBigExport_SavedModel_Tensor"

    def __init__(self, model_uri: str, *, inference_fn: InferenceFn = default_tensor_inference_fn,
                 **kwargs: Any) -> None:
        super().__init__(model_uri, inference_fn=inference_fn, **kwargs)


def _nbytes(example: Any) -> int:
    if isinstance(example, dict):
        return sum(_nbytes(value) for value in example.values())
    if isinstance(example, tf.Tensor):
        return int(tf.size(example)) * example.dtype.size
    return int(np.asarray(example).nbytes)
