"""Keras 3 variables: restored, in the program's graph, where the functions read them.

In the graph of a SavedModel, Keras 3's TensorFlow variable
(``keras.src.backend.tensorflow.core.Variable._export_to_saved_model_graph``)
maps itself to a *new* ``tf.Variable`` initialized from the exported copy of
the variable it wraps. The saver's restore function then restores the new
variable while the functions read the copy, so every session-based loader
(C++ ``LoadSavedModel`` in TensorFlow Serving and Vertex AI, ``saved_model_cli
run``, TF1 ``tf.compat.v1.saved_model.load``) fails with "Could not find
variable ..." on any Keras 3 model, whatever the program format.
``tf.saved_model.load`` restores through the object graph and is unaffected.

During imageformat's saves the Keras variable maps to the exported copy
itself, so both loaders restore the variables the functions read. Nothing is
patched if Keras is not imported or no longer has that mapping.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
from typing import Any, Iterator

_KERAS_CORE = "keras.src.backend.tensorflow.core"
_NEW_VARIABLE_MAPPING = "object_map[self] = tf.Variable(object_map[self.value])"


def _export_to_saved_model_graph(self: Any, object_map: Any, tensor_map: Any, options: Any, **kwargs: Any) -> Any:
    resources = self.value._export_to_saved_model_graph(  # pylint: disable=protected-access
        object_map, tensor_map, options, **kwargs)
    object_map[self] = object_map[self.value]
    return resources


_patches: Any = None


def _patch_set() -> Any:
    """The patch for the imported Keras, or None if it needs none."""
    global _patches  # pylint: disable=global-statement
    core = sys.modules.get(_KERAS_CORE)
    if core is None:
        return None
    if _patches is None:
        variable = getattr(core, "Variable", None)
        original = getattr(variable, "_export_to_saved_model_graph", None)
        try:
            source = inspect.getsource(original) if original is not None else ""
        except (OSError, TypeError):
            source = ""
        if _NEW_VARIABLE_MAPPING not in source:
            _patches = False  # this Keras maps its variables some other way: leave it alone
        else:
            from tf_bigexport.imageformat import tf_support  # pylint: disable=import-outside-toplevel
            _patches = tf_support._PatchSet([  # pylint: disable=protected-access
                (variable, "_export_to_saved_model_graph", _export_to_saved_model_graph, original)])
    return _patches or None


@contextlib.contextmanager
def restored_where_read() -> Iterator[None]:
    """Within the block, SavedModel saves map Keras 3 variables to the variables their functions read."""
    patches = _patch_set()
    if patches is None:
        yield
        return
    with patches.held():
        yield
