"""Image-format save and load inside open-source TensorFlow 2.15 to 2.21.

The pip build of TensorFlow has the image-format code path in save.py but
never imports a splitter, refuses the option in SaveOptions, serializes the
whole GraphDef at once (fatal past 2 GiB), and reads only .pb/.pbtxt on load.
This module patches exactly those four places, and only while one of our
saves or loads runs (or for good after ``enable()``).

The version is checked before any internal is imported, and every internal we
touch is checked at import: a TensorFlow outside the supported range, or whose
internals differ, gets an ImportError naming it, never a silently wrong file.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import math
import os
import textwrap
import threading
from typing import Any, Callable, Iterator

import numpy as np

from tf_bigexport.imageformat import tf_version
from tf_bigexport.imageformat.tf_version import UnsupportedTensorFlowError
from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB, SAVED_MODEL_PB

tf = tf_version.import_tensorflow()  # a missing or unsupported TensorFlow is refused by name first

# pylint: disable=wrong-import-position
from google.protobuf import message
from tensorflow.python.eager.polymorphic_function import saved_model_utils
from tensorflow.python.framework import ops
from tensorflow.python.framework import tensor_util
from tensorflow.python.lib.io import file_io
from tensorflow.python.saved_model import builder_impl
from tensorflow.python.saved_model import fingerprinting_utils
from tensorflow.python.saved_model import load as load_lib
from tensorflow.python.saved_model import loader_impl
from tensorflow.python.saved_model import save as save_lib
from tensorflow.python.saved_model import save_options
from tensorflow.python.saved_model.pywrap_saved_model import constants
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap
# pylint: enable=wrong-import-position

SUPPORTED_VERSIONS = tf_version.SUPPORTED_RANGE


# --------------------------------------------------------------------------
# Per-version adaptations
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Adaptation:
    """Where a supported TensorFlow minor differs in what we patch.

    Read from each minor's installed sources; the shape checks below confirm
    the installed TensorFlow matches its entry. Unchanged from 2.15 to 2.21
    and therefore not listed: the save path (save_and_return_nodes,
    _fill_meta_graph_def, TrackableConstant), Graph._as_graph_def and the
    loader's parse_saved_model. builder_impl passes Riegeli writer options to
    the splitter's write() from 2.18 on; SavedModelSplitter.write takes both forms.
    """
    # save._SaveableView holds the SaveOptions as `.options` from 2.17 on, `._options` before.
    saveable_view_options: str = "options"
    # tf.saved_model.contains_saved_model (loader_impl.maybe_saved_model_directory)
    # sees saved_model.cpb from 2.17 on; for 2.15 and 2.16 our load patches teach it.
    contains_saved_model_sees_cpb: bool = True
    # SaveOptions.experimental_sharding_callback (MaxShardSizePolicy) exists from 2.16 on; before,
    # imageformat.save shards the checkpoint after TensorFlow wrote it (checkpoint_shards.py).
    sharding_callback: bool = True
    # save_and_return_nodes writes fingerprint.pb after an image-format save from 2.16 on; 2.15
    # writes it beside a plain saved_model.pb only, so our splitter writes it after its file.
    fingerprints_image_format: bool = True


# Every supported minor is listed, so supporting a new one is a deliberate entry.
ADAPTATIONS = {
    "2.15": Adaptation(saveable_view_options="_options", contains_saved_model_sees_cpb=False,
                       sharding_callback=False, fingerprints_image_format=False),
    "2.16": Adaptation(saveable_view_options="_options", contains_saved_model_sees_cpb=False),
    "2.17": Adaptation(),
    "2.18": Adaptation(),
    "2.19": Adaptation(),
    "2.20": Adaptation(),
    "2.21": Adaptation(),
}
ADAPTATION = ADAPTATIONS[tf_version.minor_of(tf.__version__)]  # import_tensorflow checked the minor


# --------------------------------------------------------------------------
# Version and shape check
# --------------------------------------------------------------------------

def _names_used(function: Any) -> set[str]:
    """Global and attribute names a function's code refers to."""
    return set(inspect.unwrap(function).__code__.co_names)


def _params(function: Any) -> list[str]:
    return list(inspect.signature(inspect.unwrap(function)).parameters)


def _require(condition: bool, what: str) -> str | None:
    return None if condition else what


def _check_version(version: str) -> str | None:
    try:
        tf_version.check_version(version)
    except UnsupportedTensorFlowError:
        return f"version {version} is outside {SUPPORTED_VERSIONS}"
    return None


def _check_save_options() -> str | None:
    return _require(
        isinstance(getattr(save_options, "is_oss", None), bool)
        and "experimental_image_format" in getattr(save_options.SaveOptions, "__slots__", ()),
        "save_options.is_oss / SaveOptions.experimental_image_format")


def _check_save_splitter_call() -> str | None:
    function = getattr(save_lib, "save_and_return_nodes", None)
    return _require(
        function is not None
        and {"proto_splitter", "SavedModelSplitter", "write_fingerprint"} <= _names_used(function)
        and "save_and_return_nodes" in _names_used(save_lib.save),
        "save.save calling save_and_return_nodes, which calls "
        "proto_splitter.SavedModelSplitter(...).write(prefix)")


def _check_image_format_fingerprint() -> str | None:
    function = getattr(save_lib, "save_and_return_nodes", None)
    if function is None:
        return "save.save_and_return_nodes"
    body = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(function)))).body[0].body
    after_either_program = any(isinstance(statement, ast.Expr) and "write_fingerprint" in ast.unparse(statement)
                               for statement in body)
    return _require(
        after_either_program == ADAPTATION.fingerprints_image_format,
        "save.save_and_return_nodes writing fingerprint.pb "
        + ("after either program file" if ADAPTATION.fingerprints_image_format else "beside saved_model.pb only"))


def _check_sharding_callback() -> str | None:
    has_callback = "experimental_sharding_callback" in getattr(save_options.SaveOptions, "__slots__", ())
    return _require(
        has_callback == ADAPTATION.sharding_callback
        and hasattr(tf.train.experimental, "MaxShardSizePolicy") == ADAPTATION.sharding_callback,
        "SaveOptions.experimental_sharding_callback and tf.train.experimental.MaxShardSizePolicy "
        + ("present" if ADAPTATION.sharding_callback else "absent"))


def _check_fill_meta_graph_def() -> str | None:
    fill = getattr(save_lib, "_fill_meta_graph_def", None)
    build = getattr(save_lib, "_build_meta_graph_impl", None)
    return _require(
        fill is not None and build is not None
        and "saveable_view" in _params(fill)
        and "_as_graph_def" in _names_used(fill)
        and "_fill_meta_graph_def" in _names_used(build)
        and {"capture", "function"} <= set(getattr(saved_model_utils.TrackableConstant, "__slots__", ())),
        "save._fill_meta_graph_def(saveable_view=...) calling Graph._as_graph_def; "
        "saved_model_utils.TrackableConstant.capture/.function")


def _check_captured_constant_export() -> str | None:
    export = getattr(saved_model_utils.TrackableConstant, "_export_to_saved_model_graph", None)
    return _require(
        export is not None
        and _params(export)[:2] == ["self", "tensor_map"]
        and "_exported_tensor" in getattr(saved_model_utils.TrackableConstant, "__slots__", ())
        and callable(getattr(ops.Graph, "_create_op_internal", None))
        and isinstance(saved_model_utils.TrackableConstant.__dict__.get("_deserialize_from_proto"),
                       classmethod)
        and _params(saved_model_utils.TrackableConstant._deserialize_from_proto)[:2]  # pylint: disable=protected-access
        == ["object_proto", "operation_attributes"],
        "saved_model_utils.TrackableConstant._export_to_saved_model_graph(self, tensor_map, ...) "
        "setting _exported_tensor, classmethod _deserialize_from_proto(cls, object_proto, "
        "operation_attributes); Graph._create_op_internal")


def _check_graph_internals() -> str | None:
    as_graph_def = getattr(ops.Graph, "_as_graph_def", None)
    if as_graph_def is None:
        return "ops.Graph._as_graph_def"
    graph = ops.Graph()
    return _require(
        _params(as_graph_def) == ["self", "from_version", "add_shapes", "use_pybind11_proto"]
        and all(hasattr(graph, name) for name in ("_functions", "_lock", "graph_def_versions", "version"))
        and hasattr(ops.Operation, "_node_def"),
        "ops.Graph._as_graph_def(self, from_version, add_shapes, use_pybind11_proto), "
        "Graph._functions/_lock/graph_def_versions, Operation._node_def")


def _check_saveable_view_options() -> str | None:
    init = getattr(getattr(save_lib, "_SaveableView", None), "__init__", None)
    return _require(
        init is not None and ADAPTATION.saveable_view_options in _names_used(init),
        f"save._SaveableView.{ADAPTATION.saveable_view_options} (the save's SaveOptions)")


def _check_contains_saved_model() -> str | None:
    maybe = getattr(loader_impl, "maybe_saved_model_directory", None)
    contains = getattr(loader_impl, "contains_saved_model", None)
    return _require(
        maybe is not None and contains is not None
        and "maybe_saved_model_directory" in _names_used(contains)
        and ("SAVED_MODEL_FILENAME_CPB" in _names_used(maybe)) == ADAPTATION.contains_saved_model_sees_cpb,
        "loader_impl.contains_saved_model calling maybe_saved_model_directory, which "
        + ("checks" if ADAPTATION.contains_saved_model_sees_cpb else "does not check") + " saved_model.cpb")


def _check_loader() -> str | None:
    parse = getattr(loader_impl, "parse_saved_model", None)
    with_debug = getattr(loader_impl, "parse_saved_model_with_debug_info", None)
    load_partial = getattr(load_lib, "load_partial", None)
    return _require(
        parse is not None and with_debug is not None and load_partial is not None
        and _params(parse) == ["export_dir"]
        and "parse_saved_model" in _names_used(with_debug)
        and "parse_saved_model_with_debug_info" in _names_used(load_partial),
        "loader_impl.parse_saved_model(export_dir) reached from load.load_partial")


def _check_constants_and_fingerprinting() -> str | None:
    return _require(
        getattr(constants, "SAVED_MODEL_FILENAME_CPB", None) == SAVED_MODEL_CPB
        and getattr(constants, "SAVED_MODEL_FILENAME_PB", None) == SAVED_MODEL_PB
        and getattr(constants, "SAVED_MODEL_FILENAME_PREFIX", None) == "saved_model"
        and callable(getattr(fingerprinting_pywrap, "CreateFingerprintDef", None))
        and callable(getattr(fingerprinting_utils, "write_fingerprint", None)),
        "saved_model constants (saved_model.cpb) and CreateFingerprintDef")


_SHAPE_CHECKS: tuple[Callable[[], str | None], ...] = (
    _check_save_options,
    _check_save_splitter_call,
    _check_image_format_fingerprint,
    _check_sharding_callback,
    _check_fill_meta_graph_def,
    _check_graph_internals,
    _check_captured_constant_export,
    _check_saveable_view_options,
    _check_loader,
    _check_contains_saved_model,
    _check_constants_and_fingerprinting,
)


def check_supported(version: str | None = None) -> None:
    """Raises UnsupportedTensorFlowError unless every patched internal is as expected."""
    installed = tf.__version__ if version is None else version
    problems = [problem for problem in [_check_version(installed)] if problem]
    for check in _SHAPE_CHECKS:
        try:
            problem = check()
        except (AttributeError, TypeError, ValueError, OSError) as error:  # OSError: no source to read
            problem = f"{check.__name__}: {error}"
        if problem:
            problems.append(problem)
    if problems:
        raise UnsupportedTensorFlowError(
            f"imageformat supports TensorFlow {SUPPORTED_VERSIONS}; the installed TensorFlow "
            f"{installed} does not match what it patches: missing or changed: "
            + "; ".join(problems))


check_supported()

# Captured after the check: the originals our patches wrap and restore.
_ORIGINAL_FILL_META_GRAPH_DEF = save_lib._fill_meta_graph_def  # pylint: disable=protected-access
_ORIGINAL_AS_GRAPH_DEF = ops.Graph._as_graph_def  # pylint: disable=protected-access
_ORIGINAL_SAVE_AND_RETURN_NODES = save_lib.save_and_return_nodes
# The classmethod object itself, so that restoring the patch restores a classmethod.
_ORIGINAL_RESTORE_CONSTANT = saved_model_utils.TrackableConstant.__dict__["_deserialize_from_proto"]
_ORIGINAL_EXPORT_CONSTANT = saved_model_utils.TrackableConstant._export_to_saved_model_graph  # pylint: disable=protected-access
_ORIGINAL_PARSE_SAVED_MODEL = loader_impl.parse_saved_model
_ORIGINAL_MAYBE_SAVED_MODEL_DIRECTORY = loader_impl.maybe_saved_model_directory
_MISSING = object()
_ORIGINAL_SAVE_SPLITTER = getattr(save_lib, "proto_splitter", _MISSING)
_ORIGINAL_BUILDER_SPLITTER = getattr(builder_impl, "proto_splitter", _MISSING)


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------

def image_format_options(options: save_options.SaveOptions | None,
                         max_shard_size: int | None = None) -> save_options.SaveOptions:
    """A copy of ``options`` with experimental_image_format set, and checkpoint shards of at
    most ``max_shard_size`` bytes where TensorFlow writes them itself (2.16 on; before,
    our splitter reshards: see ``image_format_saving``).

    The constructor refuses the flag in OSS builds; the attribute itself is
    plain, so it is set after construction on a copy (the caller's object is
    left as it was).
    """
    copy = save_options.SaveOptions()
    if options is not None:
        if not isinstance(options, save_options.SaveOptions):
            raise TypeError(f"options must be tf.saved_model.SaveOptions, got {type(options).__name__}")
        for name in save_options.SaveOptions.__slots__:
            setattr(copy, name, getattr(options, name))
    copy.experimental_image_format = True
    if max_shard_size is not None:
        from tf_bigexport.imageformat import checkpoint_shards  # pylint: disable=import-outside-toplevel
        checkpoint_shards.check_max_shard_size(max_shard_size)
        if ADAPTATION.sharding_callback:
            copy.experimental_sharding_callback = tf.train.experimental.MaxShardSizePolicy(max_shard_size)
    return copy


# --------------------------------------------------------------------------
# The patched functions
# --------------------------------------------------------------------------

# True while _fill_meta_graph_def runs for an image-format save.
_assembling_graph_def = contextvars.ContextVar("imageformat_assembling_graph_def", default=False)
# Split threshold of the save running in this context (None: library default).
_max_chunk_size = contextvars.ContextVar("imageformat_max_chunk_size", default=None)
# The progress callback (chunked.WriteProgress) of the image-format save in this context.
_write_progress = contextvars.ContextVar("imageformat_write_progress", default=None)
# Largest tensor a constant of the save running in this context may hold (None: protobuf's limit).
_max_constant_bytes = contextvars.ContextVar("imageformat_max_constant_bytes", default=None)
# Checkpoint shard limit of the save running in this context, for the splitter to reshard
# where TensorFlow has no MaxShardSizePolicy (None: the checkpoint stays as TensorFlow wrote it).
_max_shard_size = contextvars.ContextVar("imageformat_max_shard_size", default=None)
_enabled_max_chunk_size: int | None = None


class _DeferredConstants:
    """Contents of the captured constants an image-format save left out of its
    graph (node name -> bytes), for the MetaGraphDef they belong to."""

    def __init__(self, meta_graph_def: Any) -> None:
        self.meta_graph_def = meta_graph_def
        self.contents: dict[str, memoryview] = {}


# True within save_and_return_nodes, the only caller of _fill_meta_graph_def that
# hands the SavedModel to our splitter (export_meta_graph serializes it itself,
# so its constants must stay in the graph).
_writing_saved_model = contextvars.ContextVar("imageformat_writing_saved_model", default=False)
# Set by _fill_meta_graph_def of an image-format save, taken by our splitter
# when the same save writes its SavedModel (in between TensorFlow's code runs).
_deferred_constants = contextvars.ContextVar("imageformat_deferred_constants", default=None)
# The servable save running in this context (constants_as_variables.MovedConstants), if
# any: its program must be a plain saved_model.pb of at most .max_program_bytes, checked
# by .check_program_fits(meta_graph_def, held_out_bytes) before the checkpoint is written.
servable_save = contextvars.ContextVar("imageformat_servable_save", default=None)
# Within chunked_loading: tensor_content of top-level graph constants the merger
# held out of the proto (node name -> bytes), until their tensors are restored.
_loaded_constants = contextvars.ContextVar("imageformat_loaded_constants", default=None)


@functools.wraps(_ORIGINAL_FILL_META_GRAPH_DEF)
def _fill_meta_graph_def(*args: Any, **kwargs: Any) -> Any:
    bound = inspect.signature(_ORIGINAL_FILL_META_GRAPH_DEF).bind(*args, **kwargs)
    saveable_view = bound.arguments["saveable_view"]
    if not getattr(saveable_view, ADAPTATION.saveable_view_options).experimental_image_format:
        return _ORIGINAL_FILL_META_GRAPH_DEF(*args, **kwargs)
    _check_captured_constants(saveable_view, _max_constant_bytes.get())
    token = _assembling_graph_def.set(True)
    _deferred_constants.set(_DeferredConstants(bound.arguments["meta_graph_def"])
                            if _writing_saved_model.get() else None)
    try:
        result = _ORIGINAL_FILL_META_GRAPH_DEF(*args, **kwargs)
        _check_servable_program(bound.arguments["meta_graph_def"])
        return result
    except BaseException:
        _deferred_constants.set(None)
        raise
    finally:
        _assembling_graph_def.reset(token)


def _check_servable_program(meta_graph_def: Any) -> None:
    """A servable save stops here, before the checkpoint is written, if its program is too large."""
    moving = servable_save.get()
    if moving is None:
        return
    deferred = _deferred_constants.get()
    held_out = sum(len(content) for content in deferred.contents.values()) if deferred is not None else 0
    moving.check_program_fits(meta_graph_def, held_out)


@functools.wraps(_ORIGINAL_SAVE_AND_RETURN_NODES)
def _save_and_return_nodes(*args: Any, **kwargs: Any) -> Any:
    token = _writing_saved_model.set(True)
    try:
        return _ORIGINAL_SAVE_AND_RETURN_NODES(*args, **kwargs)
    finally:
        _writing_saved_model.reset(token)
        _deferred_constants.set(None)  # never outlives its save, even a failed one


@functools.wraps(_ORIGINAL_EXPORT_CONSTANT)
def _export_captured_constant(self: Any, tensor_map: Any, **kwargs: Any) -> Any:
    """Large captured constants of an image-format save keep their bytes out of
    the graph until they are written (see deferred_constants.py)."""
    deferred = _deferred_constants.get()
    if deferred is not None and _assembling_graph_def.get():
        from tf_bigexport.imageformat import deferred_constants  # pylint: disable=import-outside-toplevel
        exported = deferred_constants.export_deferred(self.capture, deferred.contents)
        if exported is not None:
            tensor_map[self.capture] = exported
            self._exported_tensor = exported  # pylint: disable=protected-access
            return [self.capture]
    return _ORIGINAL_EXPORT_CONSTANT(self, tensor_map=tensor_map, **kwargs)


def _check_captured_constants(saveable_view: Any, limit: int | None) -> None:
    """Refuses, with the way out, a captured constant too large for one TensorProto.

    TensorFlow would fail later, deep in map_resources, with only "Cannot
    create a tensor proto whose content is larger than 2GB" and no name.
    Constants filled with one value pass: TensorFlow saves them by shape.
    """
    from tf_bigexport.imageformat import splitter  # pylint: disable=import-outside-toplevel
    limit = splitter.PROTOBUF_LIMIT if limit is None else limit
    for node in saveable_view.nodes:
        if not isinstance(node, saved_model_utils.TrackableConstant):
            continue
        capture = node.capture
        if not capture.shape.is_fully_defined() or capture.dtype == tf.string:
            continue
        nbytes = capture.shape.num_elements() * capture.dtype.size
        if nbytes <= limit:
            continue
        value = tensor_util.constant_value(capture)
        from tf_bigexport.imageformat.deferred_constants import is_uniform  # pylint: disable=import-outside-toplevel
        if value is None or is_uniform(value):
            continue
        raise splitter.constant_too_large(
            f"the {capture.dtype.name} constant of shape {capture.shape} captured by function "
            f"{os.fsdecode(node.function.name)!r}", nbytes, limit)


@functools.wraps(_ORIGINAL_AS_GRAPH_DEF)
def _as_graph_def(self: ops.Graph, from_version: Any = None, add_shapes: bool = False,
                  use_pybind11_proto: bool = False) -> Any:
    if _assembling_graph_def.get() and from_version is None:
        from tf_bigexport.imageformat import graph_assembly  # pylint: disable=import-outside-toplevel
        return graph_assembly.assemble_graph_def(self, add_shapes=add_shapes), self.version
    return _ORIGINAL_AS_GRAPH_DEF(self, from_version, add_shapes, use_pybind11_proto)


class SavedModelSplitter:
    """Stands in for TensorFlow's internal proto_splitter.SavedModelSplitter."""

    def __init__(self, saved_model: Any) -> None:
        self._saved_model = saved_model

    def write(self, prefix: str | bytes, writer_options: Any = None) -> str:
        """Writes ``<prefix>.cpb`` (or ``.pb`` if nothing needs splitting); returns the path."""
        del writer_options  # TensorFlow's Riegeli options; our writer picks its own.
        from tf_bigexport.imageformat import chunked  # pylint: disable=import-outside-toplevel
        prefix = os.fsdecode(prefix)
        export_dir, name = os.path.split(prefix)
        if name != constants.SAVED_MODEL_FILENAME_PREFIX:
            raise ValueError(f"{prefix}: expected a path ending in /{constants.SAVED_MODEL_FILENAME_PREFIX}")
        chunk_size = _max_chunk_size.get()
        if chunk_size is None:
            chunk_size = _enabled_max_chunk_size
        kwargs = {} if chunk_size is None else {"max_chunk_size": chunk_size}
        if _max_constant_bytes.get() is not None:
            kwargs["max_constant_bytes"] = _max_constant_bytes.get()
        if _write_progress.get() is not None:
            kwargs["progress"] = _write_progress.get()
        deferred = _deferred_constants.get()
        _deferred_constants.set(None)
        if deferred is not None and deferred.contents and any(
                meta_graph is deferred.meta_graph_def for meta_graph in self._saved_model.meta_graphs):
            kwargs["deferred_constants"] = deferred.contents
        moving = servable_save.get()
        if moving is not None:  # the servable form: a plain .pb or nothing
            kwargs.update(max_chunk_size=moving.max_program_bytes, plain_only=True)
        # Also removes a stale saved_model.pb/.cpb of an earlier save, which
        # loaders would otherwise prefer or confuse with the new file.
        path = os.fspath(chunked.write_saved_model_proto(self._saved_model, export_dir, **kwargs))
        if _writing_saved_model.get():  # the checkpoint is complete: the save writes it before the program
            _reshard_checkpoint(export_dir)
            if not ADAPTATION.fingerprints_image_format:
                fingerprinting_utils.write_fingerprint(export_dir)  # the last file of the save, as from 2.16 on
        return path


def _reshard_checkpoint(export_dir: str) -> None:
    """Shards of at most the save's max_shard_size where TensorFlow cannot write them (before 2.16),
    before fingerprint.pb is computed (its checkpoint_hash covers the index)."""
    limit = _max_shard_size.get()
    if limit is None or ADAPTATION.sharding_callback:
        return
    from tf_bigexport.imageformat import checkpoint_shards  # pylint: disable=import-outside-toplevel
    checkpoint_shards.reshard(os.path.join(export_dir, "variables", "variables"), limit)


class _SplitterModule:
    """What save.py and builder_impl.py find under the name ``proto_splitter``."""

    SavedModelSplitter = SavedModelSplitter


_SPLITTER_MODULE = _SplitterModule()


@functools.wraps(_ORIGINAL_PARSE_SAVED_MODEL)
def _parse_saved_model(export_dir: Any) -> Any:
    from tf_bigexport.imageformat import chunked, program_files  # pylint: disable=import-outside-toplevel
    directory = os.fsdecode(os.fspath(export_dir))
    if not program_files.is_local(directory):  # object stores: TensorFlow's file layer, .pb/.pbtxt only
        return _ORIGINAL_PARSE_SAVED_MODEL(export_dir)
    # Local directories: our readers, with TensorFlow's preference (.pb, then .pbtxt, then
    # .cpb), refusing special files and reading within the limits of limits.py.
    names = (constants.SAVED_MODEL_FILENAME_PB, constants.SAVED_MODEL_FILENAME_PBTXT,
             constants.SAVED_MODEL_FILENAME_CPB)
    path = next((os.path.join(directory, name) for name in names
                 if os.path.lexists(os.path.join(directory, name))), None)
    if path is None:
        return _ORIGINAL_PARSE_SAVED_MODEL(export_dir)  # TensorFlow's "does not exist" error
    held_out = _loaded_constants.get() if path.endswith(".cpb") else None
    try:
        saved_model = chunked.read_saved_model(directory, graph_constants=held_out)
    except (ValueError, message.DecodeError) as error:
        # TensorFlow's loaders report unreadable program files as IOError.
        raise IOError(f"Cannot parse file {path}: {error}") from error
    if held_out and not _restores_constants_by_object(saved_model):
        _put_back(saved_model, held_out)  # a TF1 model: its whole graph gets imported
    return saved_model


@functools.wraps(_ORIGINAL_MAYBE_SAVED_MODEL_DIRECTORY)
def _maybe_saved_model_directory(export_dir: Any) -> bool:
    """TensorFlow 2.16's check, taught saved_model.cpb as 2.17's does."""
    return bool(_ORIGINAL_MAYBE_SAVED_MODEL_DIRECTORY(export_dir)) or file_io.file_exists(
        file_io.join(os.fsdecode(os.fspath(export_dir)), SAVED_MODEL_CPB))


def _restores_constants_by_object(saved_model: Any) -> bool:
    """Whether TensorFlow's loader reads top-level graph constants only through
    TrackableConstant (a TF2 SavedModel: one meta graph with an object graph)."""
    return len(saved_model.meta_graphs) == 1 and saved_model.meta_graphs[0].HasField("object_graph_def")


def _put_back(saved_model: Any, held_out: dict) -> None:
    for meta_graph in saved_model.meta_graphs:
        for node in meta_graph.graph_def.node:
            data = held_out.pop(node.name, None)
            if data is not None:
                node.attr["value"].tensor.tensor_content = bytes(data)


def _restore_constant(cls: Any, object_proto: Any, operation_attributes: Any, **kwargs: Any) -> Any:
    """TrackableConstant's restore, for a constant whose bytes the merger held
    out of the proto: one copy, from the record read, into the eager tensor
    (instead of into the proto, out of it, then into the tensor)."""
    held_out = _loaded_constants.get()
    name = object_proto.constant.operation
    data = held_out.pop(name, None) if held_out else None
    if data is None:
        return _ORIGINAL_RESTORE_CONSTANT.__get__(None, cls)(
            object_proto, operation_attributes=operation_attributes, **kwargs)
    tensor = operation_attributes[name]["value"].tensor
    dtype = tf.dtypes.as_dtype(tensor.dtype)
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if dtype == tf.string or len(data) != math.prod(shape) * dtype.size:
        raise ValueError(f"constant {name!r}: {len(data)} bytes of tensor_content do not fit "
                         f"a {dtype.name} tensor of shape {shape}")
    array = np.frombuffer(data, dtype=dtype.as_numpy_dtype).reshape(shape)
    return tf.constant(array)


# --------------------------------------------------------------------------
# Installing and removing patches
# --------------------------------------------------------------------------

class _PatchSet:
    """Module attributes swapped in while at least one user holds the set."""

    def __init__(self, patches: list[tuple[Any, str, Any, Any]]) -> None:
        # (owner, attribute, replacement, original or _MISSING)
        self._patches = patches
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self._users == 0:
                for owner, attribute, replacement, _ in self._patches:
                    setattr(owner, attribute, replacement)
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for owner, attribute, _, original in self._patches:
                    if original is _MISSING:
                        delattr(owner, attribute)
                    else:
                        setattr(owner, attribute, original)

    @property
    def active(self) -> bool:
        return self._users > 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


_SAVE_PATCHES = _PatchSet([
    (save_lib, "proto_splitter", _SPLITTER_MODULE, _ORIGINAL_SAVE_SPLITTER),
    (builder_impl, "proto_splitter", _SPLITTER_MODULE, _ORIGINAL_BUILDER_SPLITTER),
    (save_lib, "_fill_meta_graph_def", _fill_meta_graph_def, _ORIGINAL_FILL_META_GRAPH_DEF),
    (save_lib, "save_and_return_nodes", _save_and_return_nodes, _ORIGINAL_SAVE_AND_RETURN_NODES),
    (ops.Graph, "_as_graph_def", _as_graph_def, _ORIGINAL_AS_GRAPH_DEF),
    (saved_model_utils.TrackableConstant, "_export_to_saved_model_graph", _export_captured_constant,
     _ORIGINAL_EXPORT_CONSTANT),
])
_LOAD_PATCHES = _PatchSet([
    (loader_impl, "parse_saved_model", _parse_saved_model, _ORIGINAL_PARSE_SAVED_MODEL),
    (saved_model_utils.TrackableConstant, "_deserialize_from_proto", classmethod(_restore_constant),
     _ORIGINAL_RESTORE_CONSTANT),
] + ([] if ADAPTATION.contains_saved_model_sees_cpb else [
    (loader_impl, "maybe_saved_model_directory", _maybe_saved_model_directory,
     _ORIGINAL_MAYBE_SAVED_MODEL_DIRECTORY),
]))
_ALLOW_OPTION = _PatchSet([
    (save_options, "is_oss", False, save_options.is_oss),
])
_enable_lock = threading.Lock()
_enabled = False


@contextlib.contextmanager
def image_format_saving(max_chunk_size: int | None = None,
                        max_constant_bytes: int | None = None,
                        progress: Any = None, max_shard_size: int | None = None) -> Iterator[None]:
    """Within the block, image-format saves go through our splitter and graph assembly.

    ``max_constant_bytes`` (None: protobuf's 2 GiB limit) is the largest tensor
    one constant may hold; larger ones raise ConstantTooLargeError.
    ``progress`` (a chunked.WriteProgress) hears of the program file's bytes.
    ``max_shard_size``: where TensorFlow has no MaxShardSizePolicy (2.15), the
    splitter reshards the checkpoint to it (checkpoint_shards.py) before
    fingerprint.pb is written; from 2.16 on, image_format_options sets the policy.
    """
    for name, value in (("max_chunk_size", max_chunk_size), ("max_constant_bytes", max_constant_bytes)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    token = _max_chunk_size.set(max_chunk_size)
    constant_token = _max_constant_bytes.set(max_constant_bytes)
    progress_token = _write_progress.set(progress)
    shard_token = _max_shard_size.set(max_shard_size)
    try:
        with _SAVE_PATCHES.held():
            yield
    finally:
        _max_shard_size.reset(shard_token)
        _write_progress.reset(progress_token)
        _max_constant_bytes.reset(constant_token)
        _max_chunk_size.reset(token)


@contextlib.contextmanager
def chunked_loading() -> Iterator[None]:
    """Within the block, TensorFlow's loaders read saved_model.cpb too.

    Large graph constants of a .cpb go from the records read straight into
    the restored tensors (held out of the merged proto until then).
    """
    token = _loaded_constants.set({})
    try:
        with _LOAD_PATCHES.held():
            yield
    finally:
        _loaded_constants.reset(token)


def enable(*, max_chunk_size: int | None = None) -> None:
    """Makes TensorFlow's own save/load handle the image format from now on.

    ``tf.saved_model.save(..., options=tf.saved_model.SaveOptions(
    experimental_image_format=True))`` then writes through our splitter, and
    ``tf.saved_model.load`` reads saved_model.cpb (and what builds on it, such as
    Keras's TFSMLayer); TFLite's converter refuses a .cpb with a message naming
    the way out (tflite_guard.py). Idempotent; a later call
    may change ``max_chunk_size`` (None: the splitter's default).
    """
    global _enabled, _enabled_max_chunk_size  # pylint: disable=global-statement
    if max_chunk_size is not None and (not isinstance(max_chunk_size, int) or max_chunk_size <= 0):
        raise ValueError(f"max_chunk_size must be a positive int, got {max_chunk_size!r}")
    with _enable_lock:
        _enabled_max_chunk_size = max_chunk_size
        if _enabled:
            return
        _ALLOW_OPTION.acquire()
        _SAVE_PATCHES.acquire()
        _LOAD_PATCHES.acquire()
        # TFLite's converter reads through TensorFlow's C++ loader, which no patch
        # reaches: it refuses a .cpb up front instead (imageformat/tflite_guard.py).
        from tf_bigexport.imageformat import tflite_guard
        _PatchSet(tflite_guard.patches()).acquire()
        _enabled = True


def is_enabled() -> bool:
    return _enabled
