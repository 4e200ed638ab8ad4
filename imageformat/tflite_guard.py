"""A clear refusal when TFLite's converter is given an image-format SavedModel.

``tf.lite.TFLiteConverter.from_saved_model`` reads the program with
TensorFlow's C++ loader, which knows saved_model.pb / .pbtxt only: on a
directory holding saved_model.cpb it fails with "SavedModel file does not
exist" (or, once ``enable()`` lets the Python side read the .cpb, "Could not
find SavedModel .pb or .pbtxt" from deep inside the conversion). With
``enable()`` on, the converter refuses such a directory up front, naming it
and the two ways to a file the converter can read.
"""
from __future__ import annotations

import os
from typing import Any

from tf_bigexport.savedmodel_files import SAVED_MODEL_CPB, SAVED_MODEL_PB, SAVED_MODEL_PBTXT


def refusal(saved_model_dir: str) -> str | None:
    """The error for a directory TFLite cannot read, or None when it can."""
    directory = os.fspath(saved_model_dir)
    if not os.path.exists(os.path.join(directory, SAVED_MODEL_CPB)):
        return None
    if any(os.path.exists(os.path.join(directory, name)) for name in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT)):
        return None
    return (f"{directory}: holds saved_model.cpb (TensorFlow's image format), which the TFLite converter "
            "cannot read (it loads the program with TensorFlow's C++ reader, .pb/.pbtxt only). Run "
            "`tf-bigexport convert` first: to a plain saved_model.pb when the merged program fits in 2 GiB, "
            "or to the servable form (large constants as checkpoint variables).")


def patches() -> list[tuple[Any, str, Any, Any]]:
    """(owner, attribute, replacement, original) for tf_support's patch set."""
    from tensorflow.lite.python import lite

    original = lite.TFLiteConverterV2.__dict__["from_saved_model"]

    def from_saved_model(cls, saved_model_dir, signature_keys=None, tags=None):
        problem = refusal(saved_model_dir)
        if problem is not None:
            raise ValueError(problem)
        return original.__func__(cls, saved_model_dir, signature_keys, tags)

    from_saved_model.__doc__ = original.__func__.__doc__
    return [(lite.TFLiteConverterV2, "from_saved_model", classmethod(from_saved_model), original)]
