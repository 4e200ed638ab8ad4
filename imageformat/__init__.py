"""The SavedModel image format (saved_model.cpb) for open-source TensorFlow.

    imageformat.save(obj, export_dir, signatures=None, options=None, *, max_chunk_size=None,
                     max_constant_bytes=None, large_constants="graph", max_program_bytes=None,
                     progress=None)
        large_constants="variables": the servable form (a plain saved_model.pb, large
        captured constants restored from the checkpoint; stock TensorFlow loads it)
    imageformat.load(export_dir, tags=None, options=None)
    imageformat.read_saved_model(export_dir, ...)  -> merged SavedModel proto
    imageformat.enable(*, max_chunk_size=None)     -> TensorFlow's own save/load use it
    imageformat.loadability.describe(export_dir)   -> what can load a SavedModel directory

The TensorFlow-facing names load lazily, so ``tf_bigexport.imageformat.riegeli`` and
other TensorFlow-free parts can be imported without importing TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tf_bigexport.imageformat.chunked import read_saved_model, write_saved_model_proto
    from tf_bigexport.imageformat.loading import load
    from tf_bigexport.imageformat.saving import save
    from tf_bigexport.imageformat.tf_support import enable

_EXPORTS = {
    "save": "tf_bigexport.imageformat.saving",
    "load": "tf_bigexport.imageformat.loading",
    "enable": "tf_bigexport.imageformat.tf_support",
    "read_saved_model": "tf_bigexport.imageformat.chunked",
    "write_saved_model_proto": "tf_bigexport.imageformat.chunked",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imageformat' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
