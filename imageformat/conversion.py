"""Converting a SavedModel directory between its forms.

    pb        a plain saved_model.pb (from a .cpb whose merged program is under 2 GiB)
    cpb       the image format: saved_model.cpb, the program split into chunks
    servable  large captured constants moved to the checkpoint, a plain
              saved_model.pb stock TensorFlow loads (the model is loaded and
              saved again, see constants_as_variables.py)

pb and cpb rewrite only the program file: variables, assets and the rest are
copied byte for byte, and TensorFlow computes the new fingerprint.pb. servable
carries assets.extra/ (TF Serving's warmup requests) over as it is. The
output appears complete or not at all (built next to it, then renamed).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.local_files import replacing_directory
from tf_bigexport.imageformat import loadability
from tf_bigexport.imageformat.chunk_errors import ChunkedFormatError, ProgramTooLargeError
from tf_bigexport.imageformat.riegeli import RiegeliError
from tf_bigexport.savedmodel_files import (ASSETS_EXTRA, FINGERPRINT_PB, SAVED_MODEL_CPB, SAVED_MODEL_PB,
                                            SAVED_MODEL_PBTXT)

TARGETS = ("pb", "cpb", "servable")
_PROGRAM_FILES = (SAVED_MODEL_PB, SAVED_MODEL_PBTXT, SAVED_MODEL_CPB)  # TensorFlow's preference


class NotConvertibleError(ValueError):
    """The source cannot be converted to the requested form (not a SavedModel,
    corrupt, too large for a plain .pb, servable form not applicable).
    ``str()`` is one line naming the file and the cause; nothing was written."""


def convert(source_dir: str | os.PathLike, output_dir: str | os.PathLike, to: str, *,
            split_threshold: int | None = None, max_shard_size: int | None = None) -> loadability.Loadability:
    """Writes ``source_dir`` converted to form ``to`` into the new directory ``output_dir``.

    ``split_threshold``: the largest chunk of a .cpb (cpb: default half the
    program, at most 1.5 GiB, so that it is split; servable: constants of at
    least a quarter of it move, as in imageformat.save). ``max_shard_size``:
    checkpoint shard size of a servable re-save (default 1 GiB).
    """
    source_dir, output_dir = os.fspath(source_dir), os.fspath(output_dir)
    if to not in TARGETS:
        raise ValueError(f"to must be one of {', '.join(TARGETS)}, got {to!r}")
    if os.path.lexists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise FileExistsError(f"{output_dir}: already exists and is not an empty directory")
    program = _program_file(source_dir)
    os.makedirs(os.path.dirname(os.path.abspath(output_dir)), exist_ok=True)
    with replacing_directory(output_dir) as building:  # the empty directory checked above, if any, goes
        if to == "servable":
            _resave_servable(source_dir, program, building, split_threshold, max_shard_size)
        else:
            _rewrite_program(source_dir, program, building, to, split_threshold)
    return loadability.describe(output_dir)


def _program_file(source_dir: str) -> str:
    if not os.path.isdir(source_dir):
        raise NotConvertibleError(f"{source_dir}: not a directory")
    for name in _PROGRAM_FILES:
        if os.path.exists(os.path.join(source_dir, name)):
            return os.path.join(source_dir, name)
    raise NotConvertibleError(f"{source_dir}: not a SavedModel directory (no saved_model.pb, "
                              "saved_model.pbtxt or saved_model.cpb)")


def _read(source_dir: str, program: str, **kwargs: Any) -> Any:
    """The merged SavedModel proto; unreadable input becomes NotConvertibleError."""
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel

    from tf_bigexport.imageformat import chunked  # pylint: disable=import-outside-toplevel
    try:
        return chunked.read_saved_model(source_dir, **kwargs)
    except ChunkedFormatError as error:
        raise NotConvertibleError(f"{error.source}: corrupt or not a SavedModel: {error.problem}") from None
    except (RiegeliError, DecodeError, ValueError) as error:
        raise NotConvertibleError(f"{program}: corrupt or not a SavedModel: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _copy_all_but_program(source_dir: str, target_dir: str) -> None:
    def ignore(directory: str, names: list[str]) -> list[str]:
        if os.path.abspath(directory) != os.path.abspath(source_dir):
            return []
        return [name for name in names if name in _PROGRAM_FILES or name == FINGERPRINT_PB]
    shutil.copytree(source_dir, target_dir, ignore=ignore)


def _rewrite_program(source_dir: str, program: str, target_dir: str, to: str, split_threshold: int | None) -> None:
    from tensorflow.python.saved_model import fingerprinting_utils  # pylint: disable=import-outside-toplevel

    from tf_bigexport.imageformat import chunked, splitter  # pylint: disable=import-outside-toplevel
    saved_model = _read(source_dir, program)
    size = saved_model.ByteSize()
    if to == "pb":
        if size > splitter.PROTOBUF_LIMIT:
            raise NotConvertibleError(
                f"{program}: the merged program proto is {human_bytes(size)}, past the 2 GiB a plain "
                "saved_model.pb can hold; if captured constants make it that large, convert to servable")
        chunk_size, plain_only = splitter.PROTOBUF_LIMIT, True
    else:
        chunk_size = split_threshold or min(splitter.DEFAULT_MAX_CHUNK_SIZE, max(1, size // 2))
        if chunk_size >= size:
            raise NotConvertibleError(
                f"{program}: the program proto ({size} bytes) fits one chunk of {chunk_size} bytes, so nothing "
                "would be split; give a smaller split threshold")
        plain_only = False
    _copy_all_but_program(source_dir, target_dir)
    try:
        chunked.write_saved_model_proto(saved_model, target_dir, max_chunk_size=chunk_size, plain_only=plain_only)
    except ProgramTooLargeError as error:
        raise NotConvertibleError(f"{program}: {error}") from None
    fingerprinting_utils.write_fingerprint(target_dir)


def _resave_servable(source_dir: str, program: str, target_dir: str, split_threshold: int | None,
                     max_shard_size: int | None) -> None:
    from tf_bigexport import imageformat  # pylint: disable=import-outside-toplevel
    structure = _read(source_dir, program, **({"skip_large_constants": True} if program.endswith(".cpb") else {}))
    if not any(len(meta_graph.object_graph_def.nodes) for meta_graph in structure.meta_graphs):
        raise NotConvertibleError(f"{program}: the servable form does not apply: a TensorFlow 1 SavedModel "
                                  "(no object graph) cannot be saved again with its constants as variables")
    del structure
    try:
        loaded = imageformat.load(source_dir)
    except (OSError, ValueError) as error:  # e.g. a corrupt constant chunk or checkpoint
        raise NotConvertibleError(f"{program}: cannot be loaded: {_first_line(error)}") from None
    try:
        imageformat.save(loaded, target_dir, signatures=dict(loaded.signatures) or None,
                         max_shard_size=max_shard_size or (1 << 30), max_chunk_size=split_threshold,
                         large_constants="variables")
    except ProgramTooLargeError as error:
        raise NotConvertibleError(f"{program}: the servable form does not apply: "
                                  f"{str(error).split('cannot save ', 1)[-1]}") from None
    # TensorFlow's save writes no assets.extra/ (TF Serving's warmup requests): carried over as is.
    if os.path.isdir(os.path.join(source_dir, ASSETS_EXTRA)):
        shutil.copytree(os.path.join(source_dir, ASSETS_EXTRA), os.path.join(target_dir, ASSETS_EXTRA))
