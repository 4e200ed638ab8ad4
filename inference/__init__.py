"""Batch inference on published versions with Beam's RunInference.

    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from tf_bigexport.inference import SavedModelHandlerNumpy

    handler = SavedModelHandlerNumpy("gs://bucket/models/resnet/3", signature="serving_default")
    predictions = examples | RunInference(handler)          # or KeyedModelHandler(handler)

The handlers read a version directory (local, gs://, s3://, anything the
storage layer opens) holding saved_model.pb, saved_model.cpb (image format) or
the servable form, with the knobs of Beam's own TensorFlow handlers
(apache_beam.ml.inference.tensorflow_inference): batch sizes, inference_fn,
large_model / model_copies. See docs/inference.md.
"""
from tf_bigexport.inference.handlers import (
    SavedModelHandlerNumpy,
    SavedModelHandlerTensor,
    default_numpy_inference_fn,
    default_tensor_inference_fn,
)
from tf_bigexport.inference.loaded_version import LoadedVersion, load_version

__all__ = [
    "LoadedVersion",
    "SavedModelHandlerNumpy",
    "SavedModelHandlerTensor",
    "default_numpy_inference_fn",
    "default_tensor_inference_fn",
    "load_version",
]
