"""imageformat.save: tf.saved_model.save that writes the image format."""
from __future__ import annotations

import os
from typing import Any, Callable

import tensorflow as tf

from tf_bigexport.imageformat import splitter, tf_support
from tf_bigexport.imageformat.chunk_errors import ConstantTooLargeError

# What TensorFlow's make_tensor_proto says for a tensor past 2 GiB (any path we do not pre-check).
_TENSORFLOW_TOO_LARGE = "Cannot create a tensor proto whose content is larger than 2GB"


def save(obj: Any, export_dir: str | os.PathLike, signatures: Any = None,
         options: tf.saved_model.SaveOptions | None = None, *,
         max_chunk_size: int | None = None, max_constant_bytes: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> None:
    """Saves ``obj`` like ``tf.saved_model.save``, writing saved_model.cpb when needed.

    Everything except the program proto is TensorFlow's own code: variables
    (sharded if ``options.experimental_sharding_callback`` says so), assets,
    and fingerprint.pb (computed by TensorFlow's C++ reading our file). The
    proto is split into chunks of at most ``max_chunk_size`` bytes (None: the
    splitter's default); if nothing needs splitting the file is a plain
    saved_model.pb, as TensorFlow does. Graphs past 2 GiB are assembled op by
    op instead of in one serialization, and large captured constants are
    written from their eager tensors' buffers rather than copied into the
    graph and the proto first (deferred_constants.py): the save adds little
    memory to what the model already holds.

    A constant holding more than ``max_constant_bytes`` (None: protobuf's
    2 GiB limit, past which TensorFlow cannot store it) raises
    ConstantTooLargeError naming the export dir, the constant and the fix
    (a tf.Variable).

    ``progress(bytes just written, expected total)`` follows the program file
    (saved_model.cpb or .pb) as it is written; see chunked.WriteProgress.
    """
    export_dir = os.fspath(export_dir)
    image_options = tf_support.image_format_options(options)
    try:
        with tf_support.image_format_saving(max_chunk_size=max_chunk_size,
                                            max_constant_bytes=max_constant_bytes, progress=progress):
            tf.saved_model.save(obj, export_dir, signatures=signatures, options=image_options)
    except ConstantTooLargeError as error:
        raise ConstantTooLargeError(f"{export_dir}: cannot save {error}") from None
    except ValueError as error:
        if _TENSORFLOW_TOO_LARGE not in str(error):
            raise
        raise ConstantTooLargeError(
            f"{export_dir}: cannot save {splitter.constant_too_large('a constant of the model', None)} "
            f"(TensorFlow: {error})") from error
