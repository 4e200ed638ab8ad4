"""imageformat.save: tf.saved_model.save that writes the image format."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from imageformat import tf_support


def save(obj: Any, export_dir: str | os.PathLike, signatures: Any = None,
         options: tf.saved_model.SaveOptions | None = None, *,
         max_chunk_size: int | None = None) -> None:
    """Saves ``obj`` like ``tf.saved_model.save``, writing saved_model.cpb when needed.

    Everything except the program proto is TensorFlow's own code: variables
    (sharded if ``options.experimental_sharding_callback`` says so), assets,
    and fingerprint.pb (computed by TensorFlow's C++ reading our file). The
    proto is split into chunks of at most ``max_chunk_size`` bytes (None: the
    splitter's default); if nothing needs splitting the file is a plain
    saved_model.pb, as TensorFlow does. Graphs past 2 GiB are assembled op by
    op instead of in one serialization.
    """
    image_options = tf_support.image_format_options(options)
    with tf_support.image_format_saving(max_chunk_size=max_chunk_size):
        tf.saved_model.save(obj, os.fspath(export_dir), signatures=signatures, options=image_options)
