"""A published version loaded for inference: the object RunInference shares between threads."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from tf_bigexport import imageformat
from tf_bigexport.inference import version_cache


class LoadedVersion:
    """A loaded SavedModel version and the signature inference calls.

    Calling it runs the signature on keyword tensors and returns its dict of
    outputs, so it works in-process and through Beam's multi-process proxy
    (``large_model`` / ``model_copies``), which forwards method calls only.
    ``saved_model`` is the whole loaded object, for an ``inference_fn`` that
    needs more than the one signature (in-process only).
    """

    def __init__(self, saved_model: Any, signature: str, uri: str) -> None:
        signatures = saved_model.signatures
        if signature not in signatures:
            known = ", ".join(sorted(signatures)) or "none"
            raise ValueError(f"{uri}: no signature {signature!r} (signatures: {known})")
        self.saved_model = saved_model
        self.uri = uri
        self.signature_name = signature
        self.signature = signatures[signature]
        self.input_specs: dict[str, tf.TensorSpec] = dict(self.signature.structured_input_signature[1])

    def __call__(self, **inputs: Any) -> dict[str, tf.Tensor]:
        return self.signature(**inputs)

    def batch_inputs(self, batch: Sequence[Any], stack: Callable[[list], Any]) -> dict[str, tf.Tensor]:
        """One tensor per signature input from a batch of examples.

        An example is an array (signatures with one input) or a mapping from
        input name to array; ``stack`` joins the examples' values along a new
        first axis. Values are converted to the input's dtype.
        """
        names = sorted(self.input_specs)
        if all(isinstance(example, Mapping) for example in batch):
            given = set(batch[0]) if batch else set()
            if given != set(names) or any(set(example) != given for example in batch):
                raise ValueError(f"{self.uri}: signature {self.signature_name!r} takes inputs {names}; "
                                 f"an example has {sorted(given)}")
            columns = {name: [example[name] for example in batch] for name in names}
        elif len(names) == 1:
            columns = {names[0]: list(batch)}
        else:
            raise ValueError(f"{self.uri}: signature {self.signature_name!r} takes {len(names)} inputs "
                             f"{names}: give each example as a dict of input name to array")
        return {name: tf.convert_to_tensor(stack(values), dtype=self.input_specs[name].dtype)
                for name, values in columns.items()}


def load_version(uri: str, *, signature: str = "serving_default", tags: str | Sequence[str] | None = None,
                 storage_options: dict | None = None, cache_dir: str | os.PathLike | None = None,
                 cached_versions: int = version_cache.DEFAULT_KEEP) -> LoadedVersion:
    """Loads a version directory (.pb, .cpb or the servable form) from any storage URI.

    A remote version is downloaded into ``cache_dir`` (checked against its release record),
    where the ``cached_versions`` most recently used copies are kept.
    """
    local_dir = version_cache.local_version_dir(uri, storage_options=storage_options, cache_dir=cache_dir,
                                                keep=cached_versions)
    return LoadedVersion(imageformat.load(local_dir, tags=tags), signature, uri)
