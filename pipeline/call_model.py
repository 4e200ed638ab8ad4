"""`call`: run one signature of a SavedModel (.pb or .cpb, local or remote),
like `saved_model_cli run`."""
from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import numpy as np

from tf_bigexport.pipeline.call_inputs import InputError, collect_inputs
from tf_bigexport.pipeline.exit_codes import ExitCode
from tf_bigexport.pipeline.locations import local_model_dir


def run_signature(model_dir: str, signature: str, feeds: dict[str, np.ndarray],
                  tags: list[str] | None = None) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from tf_bigexport import imageformat
    loaded = imageformat.load(model_dir, tags=tags)
    if signature not in loaded.signatures:
        raise InputError(f"no signature {signature!r}; the model has {sorted(loaded.signatures)}")
    function = loaded.signatures[signature]
    specs: dict[str, Any] = function.structured_input_signature[1]
    missing = sorted(set(specs) - set(feeds))
    unknown = sorted(set(feeds) - set(specs))
    if missing or unknown:
        raise InputError(f"signature {signature!r} takes inputs {sorted(specs)}"
                         + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
    tensors = {}
    for name, spec in specs.items():
        try:
            tensors[name] = tf.constant(feeds[name], dtype=spec.dtype)
        except (TypeError, ValueError) as e:
            raise InputError(f"input {name!r}: cannot convert to {spec.dtype.name}: {e}") from None
        if not spec.shape.is_compatible_with(tensors[name].shape):
            raise InputError(f"input {name!r}: shape {tensors[name].shape} does not fit {spec.shape}")
    outputs = function(**tensors)
    return {name: value.numpy() for name, value in sorted(outputs.items())}


def write_outputs(outputs: dict[str, np.ndarray], outdir: str, overwrite: bool) -> list[str]:
    os.makedirs(outdir, exist_ok=True)
    written = []
    for name, value in outputs.items():
        path = os.path.join(outdir, f"{name}.npy")
        if os.path.exists(path) and not overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it")
        if value.dtype == object:  # strings: fixed-width bytes, so no pickle is needed to read them
            value = value.astype(bytes)
        np.save(path, value, allow_pickle=False)
        written.append(path)
    return written


def call_command(args) -> int:
    try:
        feeds = collect_inputs(args.inputs, args.input_exprs, args.input_examples)
    except InputError as e:
        print(f"call: {e}", file=sys.stderr)
        return ExitCode.USAGE
    tags = args.tag_set.split(",") if args.tag_set else None
    try:
        with local_model_dir(args.path) as model_dir:
            outputs = run_signature(model_dir, args.signature, feeds, tags)
        if args.outdir:
            for path in write_outputs(outputs, args.outdir, args.overwrite):
                print(f"wrote {path}")
    except InputError as e:
        print(f"call: {e}", file=sys.stderr)
        return ExitCode.USAGE
    except (OSError, ValueError) as e:
        print(f"call: {args.path}: {e}", file=sys.stderr)
        return ExitCode.FAILED
    for name, value in outputs.items():
        print(f"Result for output key {name}:")
        print(f"  dtype: {value.dtype}  shape: {list(value.shape)}")
        print(textwrap.indent(np.array2string(value, threshold=50, edgeitems=3), "  "))
    return ExitCode.OK
