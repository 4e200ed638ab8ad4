"""The servable form: large captured constants saved as checkpoint variables.

TensorFlow's save writes every tensor a function captures as a Const node of
the program, so a model that closes over a few large tensors gets a
saved_model.pb past protobuf's 2 GiB limit, which only the image format can
hold, and which stock TensorFlow (TF Serving, Vertex AI, saved_model_cli)
cannot load.

In the servable form each large captured constant instead becomes a
non-trainable ``tf.Variable`` sharing the tensor's buffer (no copy), and every
function that captured it is saved as a wrapper that reads the variable and
calls the original function with the value. That wrapper is TensorFlow's own
(``function_serialization.wrap_cached_variables``, its mechanism for captured
reads of cached variables): for the duration of one wrap, the constant is
marked as a cached read of its variable. The rest is TensorFlow's save as
usual: the variable gets a VarHandleOp in the program, an entry in the
(sharded) checkpoint, a place in ``saver_def``'s restore function (C++
``LoadSavedModel``, ``saved_model_cli``) and a node in the object graph
(``tf.saved_model.load``). The program keeps the handle, not the bytes.

The variables are listed, in the order they were found, under a new attribute
of the root object, ``_captured_constants`` (checkpoint keys
``_captured_constants/<i>/.ATTRIBUTES/VARIABLE_VALUE``). The model's own
objects, variables, checkpoint keys and trainable flags are saved as
TensorFlow saves them.

Nothing here is active outside ``moving_constants()``.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import weakref
from typing import Any, Iterator

from tensorflow.python.framework import ops
from tensorflow.python.ops import variables as variables_lib
from tensorflow.python.saved_model import function_serialization
from tensorflow.python.saved_model import save as save_lib
from tensorflow.python.trackable import data_structures

from tf_bigexport.byte_sizes import human_bytes
from tf_bigexport.imageformat import deferred_constants, tf_support
from tf_bigexport.imageformat.chunk_errors import ProgramTooLargeError
from tf_bigexport.imageformat.splitter import PROTOBUF_LIMIT
from tf_bigexport.imageformat.tf_support import UnsupportedTensorFlowError

#: Attribute of the saved root object listing the variables (suffixed if the root has one of that name).
ROOT_ATTRIBUTE = "_captured_constants"
# TensorFlow's marker of a captured cached read of a variable (weakref to the variable).
_CACHED_VARIABLE = "_cached_variable"


def _code(function: Any) -> Any:
    return getattr(inspect.unwrap(function), "__code__", None) if function is not None else None


def _check_supported() -> None:
    """The TensorFlow internals used here, as they are in 2.21 (see tf_support.check_supported)."""
    problems = []
    wrap = _code(getattr(function_serialization, "wrap_cached_variables", None))
    if wrap is None or _CACHED_VARIABLE not in wrap.co_consts:
        problems.append("function_serialization.wrap_cached_variables reading capture._cached_variable")
    view = getattr(save_lib, "_AugmentedGraphView", None)
    uncache = _code(getattr(view, "_maybe_uncache_variable_captures", None))
    if uncache is None or _CACHED_VARIABLE not in uncache.co_consts \
            or "_children_cache" not in _code(view.__init__).co_names:
        problems.append("save._AugmentedGraphView._maybe_uncache_variable_captures / _children_cache")
    saveable_view = getattr(save_lib, "_SaveableView", None)
    if saveable_view is None or list(inspect.signature(saveable_view.__init__).parameters) != [
            "self", "augmented_graph_view", "options"]:
        problems.append("save._SaveableView(augmented_graph_view, options)")
    if problems:
        raise UnsupportedTensorFlowError(
            "imageformat's servable save needs TensorFlow internals that changed: " + "; ".join(problems))


_check_supported()

_ORIGINAL_WRAP = function_serialization.wrap_cached_variables
_ORIGINAL_UNCACHE = save_lib._AugmentedGraphView._maybe_uncache_variable_captures  # pylint: disable=protected-access
_ORIGINAL_SAVEABLE_VIEW_INIT = save_lib._SaveableView.__init__  # pylint: disable=protected-access


class MovedConstants:
    """The large captured constants of one save and the variables that replace them."""

    def __init__(self, min_bytes: int, max_program_bytes: int) -> None:
        self.min_bytes = min_bytes
        self.max_program_bytes = max_program_bytes
        self.variables: list[variables_lib.Variable] = []
        self.nbytes = 0
        # id(capture) -> (capture, variable or None): one decision and one variable per tensor.
        self._decided: dict[int, tuple[Any, Any]] = {}

    def variable_for(self, capture: Any) -> Any:
        """The variable standing in for ``capture``; None if it stays a constant."""
        known = self._decided.get(id(capture))
        if known is not None:
            return known[1]
        variable = None
        if not hasattr(capture, _CACHED_VARIABLE):  # a real cached read: TensorFlow wraps it itself
            array = deferred_constants.stored_array(capture, self.min_bytes)
            if array is not None:
                with ops.init_scope():  # eager even while a function is being traced
                    variable = variables_lib.Variable(
                        capture, trainable=False, name=f"captured_constant_{len(self.variables)}")
                self.variables.append(variable)
                self.nbytes += array.nbytes
        self._decided[id(capture)] = (capture, variable)  # keeps the tensor alive: ids stay unique
        return variable

    def check_program_fits(self, meta_graph_def: Any, held_out_bytes: int = 0) -> None:
        """Raises ProgramTooLargeError, before anything is written, if the program is past its limit.

        ``held_out_bytes``: constants left out of ``meta_graph_def`` until written
        (deferred_constants.py). The object graph, added later, is not counted: it
        is small, and the splitter checks the whole proto again before writing.
        """
        size = meta_graph_def.ByteSize() + held_out_bytes
        if size <= self.max_program_bytes:
            return
        functions = sorted(((function.ByteSize(), function.signature.name)
                            for function in meta_graph_def.graph_def.library.function), reverse=True)
        largest = ", ".join(f"{name} ({human_bytes(nbytes)})" for nbytes, name in functions[:3])
        raise ProgramTooLargeError(
            f"the program is {human_bytes(size)} even with {len(self.variables)} large captured constants "
            f"({human_bytes(self.nbytes)}) moved to the checkpoint, past the {human_bytes(self.max_program_bytes)} "
            f"a plain saved_model.pb may hold here; largest functions: {largest or 'none'}. Constants built "
            "inside a tf.function (tf.constant or numpy arrays used in its body) are part of the function: "
            "create them outside it to have them moved, or save in the image format (large_constants='graph'; "
            "jobs files: format: image)")


# Marks live on the user's tensors; two saves sharing a tensor must not see each other's.
_mark_lock = threading.RLock()


@contextlib.contextmanager
def _marked_as_cached_reads(concrete_function: Any, moving: MovedConstants) -> Iterator[None]:
    """Within the block, the large constants ``concrete_function`` captures look
    like cached reads of their variables to TensorFlow's save."""
    with _mark_lock:
        marked = []
        try:
            for capture in concrete_function.captured_inputs:
                variable = moving.variable_for(capture)
                if variable is not None and not hasattr(capture, _CACHED_VARIABLE):
                    setattr(capture, _CACHED_VARIABLE, weakref.ref(variable))
                    marked.append(capture)
            yield
        finally:
            for capture in marked:
                delattr(capture, _CACHED_VARIABLE)


@functools.wraps(_ORIGINAL_WRAP)
def _wrap_cached_variables(concrete_function: Any) -> Any:
    moving = tf_support.servable_save.get()
    if moving is None:
        return _ORIGINAL_WRAP(concrete_function)
    with _marked_as_cached_reads(concrete_function, moving):
        return _ORIGINAL_WRAP(concrete_function)


@functools.wraps(_ORIGINAL_UNCACHE)
def _maybe_uncache_variable_captures(self: Any, concrete_function: Any) -> Any:
    moving = tf_support.servable_save.get()
    if moving is None:
        return _ORIGINAL_UNCACHE(self, concrete_function)
    with _marked_as_cached_reads(concrete_function, moving):
        return _ORIGINAL_UNCACHE(self, concrete_function)


@functools.wraps(_ORIGINAL_SAVEABLE_VIEW_INIT)
def _saveable_view_init(self: Any, augmented_graph_view: Any, options: Any) -> None:
    """Lists the variables under the root before TensorFlow freezes the object graph.

    Functions are wrapped as the traversal reaches them, so one traversal runs
    first; the augmented view caches children, so the frozen view sees the same
    wrapped functions."""
    moving = tf_support.servable_save.get()
    if moving is not None:
        augmented_graph_view.breadth_first_traversal()
        if moving.variables:
            root = augmented_graph_view.root
            children = dict((ref.name, ref.ref) for ref in augmented_graph_view.list_children(root))
            name = ROOT_ATTRIBUTE
            while name in children:
                name += "_"
            augmented_graph_view._children_cache[root][name] = (  # pylint: disable=protected-access
                data_structures.wrap_or_unwrap(list(moving.variables)))
    _ORIGINAL_SAVEABLE_VIEW_INIT(self, augmented_graph_view, options)


_PATCHES = tf_support._PatchSet([  # pylint: disable=protected-access
    (function_serialization, "wrap_cached_variables", _wrap_cached_variables, _ORIGINAL_WRAP),
    (save_lib._AugmentedGraphView, "_maybe_uncache_variable_captures",  # pylint: disable=protected-access
     _maybe_uncache_variable_captures, _ORIGINAL_UNCACHE),
    (save_lib._SaveableView, "__init__", _saveable_view_init, _ORIGINAL_SAVEABLE_VIEW_INIT),  # pylint: disable=protected-access
])


@contextlib.contextmanager
def moving_constants(min_bytes: int, max_program_bytes: int = PROTOBUF_LIMIT) -> Iterator[MovedConstants]:
    """Within the block, TensorFlow saves store captured constants of at least
    ``min_bytes`` as checkpoint variables and must write a plain saved_model.pb
    of at most ``max_program_bytes``; yields what was moved."""
    moving = MovedConstants(min_bytes, max_program_bytes)
    token = tf_support.servable_save.set(moving)
    try:
        with _PATCHES.held():
            yield moving
    finally:
        tf_support.servable_save.reset(token)
