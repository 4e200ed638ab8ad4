"""TensorFlow Serving's warmup requests: assets.extra/tf_serving_warmup_requests.

TensorFlow Serving (and the Vertex AI TensorFlow containers built on it) runs
every record of this TFRecord file through the model when it loads a version,
before the version takes traffic, so the first requests do not pay for lazy
initialisation. A record is a PredictionLog holding a PredictRequest: a
signature name and its inputs as TensorProtos. TensorFlow Serving refuses the
whole version (it does not load) if the file has more than 1000 records or a
request fails, which is why the pipeline replays the file against the staged
model before it publishes (transforms/reload_check.py).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from tf_bigexport.savedmodel_files import SERVING_WARMUP_REQUESTS

# tensorflow_serving/servables/tensorflow/saved_model_warmup_util.h: WarmupConsts::kMaxNumRecords.
MAX_RECORDS = 1000


class WarmupFileError(ValueError):
    """A warmup file that TensorFlow Serving would refuse."""


def write_requests(export_dir: str, requests: Mapping[str, Mapping[str, np.ndarray]], model_name: str = "") -> str:
    """Writes one predict request per signature (``signature -> input name -> array``),
    in signature order; returns the file's path."""
    import tensorflow as tf

    from tf_bigexport.imageformat.proto import serving_warmup_pb2

    if not requests:
        raise WarmupFileError(f"{export_dir}: no requests to write to {SERVING_WARMUP_REQUESTS}")
    if len(requests) > MAX_RECORDS:
        raise WarmupFileError(f"{len(requests)} warmup requests; TensorFlow Serving reads at most {MAX_RECORDS}")
    path = os.path.join(export_dir, SERVING_WARMUP_REQUESTS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in sorted(requests.items()):
            record = serving_warmup_pb2.PredictionLog()
            request = record.predict_log.request
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, value in inputs.items():
                request.inputs[name] = tf.make_tensor_proto(np.asarray(value)).SerializeToString()
            writer.write(record.SerializeToString(deterministic=True))
    return path


def read_requests(export_dir: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The (signature, inputs) of every record, as TensorFlow Serving would replay them;
    [] if the directory has no warmup file."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import tensor_pb2

    from tf_bigexport.imageformat.proto import serving_warmup_pb2

    path = os.path.join(export_dir, SERVING_WARMUP_REQUESTS)
    if not os.path.exists(path):
        return []
    requests = []
    try:
        for number, data in enumerate(tf.data.TFRecordDataset(path, buffer_size=1 << 20).as_numpy_iterator(), start=1):
            if number > MAX_RECORDS:
                raise WarmupFileError(f"{path}: more than {MAX_RECORDS} records (TensorFlow Serving's limit)")
            record = serving_warmup_pb2.PredictionLog.FromString(data)
            if not record.HasField("predict_log"):
                raise WarmupFileError(f"{path}: record {number} holds no predict request")
            request = record.predict_log.request
            inputs = {name: tf.make_ndarray(tensor_pb2.TensorProto.FromString(value))
                      for name, value in request.inputs.items()}
            requests.append((request.model_spec.signature_name or "serving_default", inputs))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise WarmupFileError(f"{path}: not a TFRecord file TensorFlow Serving can read: {error.message}") from error
    except DecodeError as error:
        raise WarmupFileError(f"{path}: record {number} is no PredictionLog ({error})") from error
    return requests
