"""imageformat.save: tf.saved_model.save that writes the image format, or the servable form."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

import tensorflow as tf

from tf_bigexport.imageformat import keras_variables, splitter, tf_support
from tf_bigexport.imageformat.chunk_errors import ConstantTooLargeError, ProgramTooLargeError

# What TensorFlow's make_tensor_proto says for a tensor past 2 GiB (any path we do not pre-check).
_TENSORFLOW_TOO_LARGE = "Cannot create a tensor proto whose content is larger than 2GB"
#: Where large captured constants go: into the program ("graph", TensorFlow's way; the
#: image format splits the program when it must) or into the checkpoint ("variables",
#: the servable form: a plain saved_model.pb that stock TensorFlow loads).
LARGE_CONSTANTS = ("graph", "variables")


def save(obj: Any, export_dir: str | os.PathLike, signatures: Any = None,
         options: tf.saved_model.SaveOptions | None = None, *,
         max_chunk_size: int | None = None, max_constant_bytes: int | None = None,
         large_constants: str = "graph", max_program_bytes: int | None = None,
         max_shard_size: int | None = None, progress: Callable[[int, int], None] | None = None) -> None:
    """Saves ``obj`` like ``tf.saved_model.save``, writing saved_model.cpb when needed.

    Everything except the program proto is TensorFlow's own code: variables
    (in shards of at most ``max_shard_size`` bytes if given; on TensorFlow 2.15,
    which cannot shard by size, our splitter reshards the checkpoint TensorFlow
    wrote, whole tensors per shard: checkpoint_shards.py), assets,
    and fingerprint.pb (computed by TensorFlow's C++ reading our file). The
    proto is split into chunks of at most ``max_chunk_size`` bytes (None: the
    splitter's default); if nothing needs splitting the file is a plain
    saved_model.pb, as TensorFlow does. Graphs past 2 GiB are assembled op by
    op instead of in one serialization, and large captured constants are
    written from their eager tensors' buffers rather than copied into the
    graph and the proto first (deferred_constants.py): the save adds little
    memory to what the model already holds.

    ``large_constants="variables"`` writes the servable form instead: every
    captured constant the image format would store as a chunk of its own (at
    least 1 MiB, or a quarter of ``max_chunk_size`` if that is smaller) becomes
    a non-trainable variable restored from the checkpoint
    (constants_as_variables.py), and the program is written as a plain
    saved_model.pb that stock TensorFlow loads. If the program is still past
    ``max_program_bytes`` (None: protobuf's 2 GiB limit), e.g. because of huge
    function bodies, ProgramTooLargeError is raised before anything is written.

    A constant holding more than ``max_constant_bytes`` (None: protobuf's
    2 GiB limit, past which TensorFlow cannot store it) raises
    ConstantTooLargeError naming the export dir, the constant and the fix
    (a tf.Variable, or ``large_constants="variables"``).

    The servable form also saves Keras 3 variables so that session-based
    loaders (C++ ``LoadSavedModel``, ``saved_model_cli run``) restore the
    variables the functions read, which TensorFlow's own save of a Keras 3
    model does not do (keras_variables.py). The image format keeps
    TensorFlow's graph exactly (same program hash as its own save).

    ``progress(bytes just written, expected total)`` follows the program file
    (saved_model.cpb or .pb) as it is written; see chunked.WriteProgress.
    """
    export_dir = os.fspath(export_dir)
    if large_constants not in LARGE_CONSTANTS:
        raise ValueError(f"large_constants must be one of {', '.join(map(repr, LARGE_CONSTANTS))}, "
                         f"got {large_constants!r}")
    if max_program_bytes is not None and large_constants != "variables":
        raise ValueError("max_program_bytes applies to large_constants='variables' only")
    image_options = tf_support.image_format_options(options, max_shard_size)
    try:
        with tf_support.image_format_saving(max_chunk_size=max_chunk_size, max_constant_bytes=max_constant_bytes,
                                            progress=progress, max_shard_size=max_shard_size), \
                _constants_in(large_constants, max_chunk_size, max_program_bytes):
            tf.saved_model.save(obj, export_dir, signatures=signatures, options=image_options)
    except (ConstantTooLargeError, ProgramTooLargeError) as error:
        raise type(error)(f"{export_dir}: cannot save {error}") from None
    except ValueError as error:
        if _TENSORFLOW_TOO_LARGE not in str(error):
            raise
        raise ConstantTooLargeError(
            f"{export_dir}: cannot save {splitter.constant_too_large('a constant of the model', None)} "
            f"(TensorFlow: {error})") from error


@contextlib.contextmanager
def _constants_in(large_constants: str, max_chunk_size: int | None,
                  max_program_bytes: int | None) -> Iterator[None]:
    if large_constants == "graph":
        yield
        return
    from tf_bigexport.imageformat import constants_as_variables  # pylint: disable=import-outside-toplevel
    if max_program_bytes is not None and (not isinstance(max_program_bytes, int) or max_program_bytes <= 0):
        raise ValueError(f"max_program_bytes must be a positive int, got {max_program_bytes!r}")
    with constants_as_variables.moving_constants(
            splitter.large_constant_bytes(max_chunk_size or splitter.DEFAULT_MAX_CHUNK_SIZE),
            max_program_bytes or splitter.PROTOBUF_LIMIT), keras_variables.restored_where_read():
        yield
