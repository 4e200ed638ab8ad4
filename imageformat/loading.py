"""imageformat.load: tf.saved_model.load that also reads saved_model.cpb."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from tf_bigexport.imageformat import program_files, tf_support


def load(export_dir: str | os.PathLike, tags: Any = None,
         options: tf.saved_model.LoadOptions | None = None) -> Any:
    """Loads a SavedModel directory holding saved_model.pb or saved_model.cpb.

    Same result and errors as ``tf.saved_model.load``; for a .cpb the chunks
    are merged into the SavedModel proto in memory (it may exceed 2 GiB) and
    TensorFlow restores functions and constants from it piece by piece. Large
    graph constants of a TF2 SavedModel skip the proto: their records go
    straight into the restored tensors (tf_support.chunked_loading).
    A local directory holding FIFOs, devices or links out of it is refused
    before TensorFlow opens any of its files (program_files.check_tree).
    """
    if program_files.is_local(export_dir):
        program_files.check_tree(export_dir)
    with tf_support.chunked_loading():
        return tf.saved_model.load(os.fspath(export_dir), tags=tags, options=options)
