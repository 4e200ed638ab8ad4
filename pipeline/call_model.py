"""`call`: run one signature of a SavedModel (.pb or .cpb, local or remote),
like `saved_model_cli run`."""
from __future__ import annotations

import os
import re
import sys
import textwrap
import traceback
from typing import Any

import numpy as np

from tf_bigexport.pipeline.call_inputs import InputError, collect_inputs
from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport.pipeline.locations import local_model_dir
from tf_bigexport.pipeline.logs import native_stderr_silenced
from tf_bigexport.storage import StorageError


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
        return fail(f"call: {e}", ExitCode.USAGE)
    tags = args.tag_set.split(",") if args.tag_set else None
    try:
        # TensorFlow's C++ runtime writes its own copy of a model error to fd 2: one line is ours.
        with local_model_dir(args.path) as model_dir, native_stderr_silenced(not getattr(args, "verbose", False)):
            outputs = run_signature(model_dir, args.signature, feeds, tags)
        if args.outdir:
            for path in write_outputs(outputs, args.outdir, args.overwrite):
                print(f"wrote {path}")
    except InputError as e:
        return fail(f"call: {e}", ExitCode.USAGE)
    except StorageError as e:  # names the location and every file concerned: shown whole
        return fail(f"call: {e}", ExitCode.FAILED)
    except Exception as e:  # noqa: BLE001 - the model's own errors too: one line, the traceback with -v
        print(f"call: {args.path}: {_one_line(e)}", file=sys.stderr)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        return ExitCode.FAILED
    for name, value in outputs.items():
        print(f"Result for output key {name}:")
        print(f"  dtype: {value.dtype}  shape: {list(value.shape)}")
        print(textwrap.indent(np.array2string(value, threshold=50, edgeitems=3), "  "))
    return ExitCode.OK


def _one_line(error: BaseException) -> str:
    """One line saying why: TensorFlow's runtime errors put the reason after "Graph execution error:"
    and a stack of the nodes involved, and the failing node's name after it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("File ", "[[", "Detected at node"))
               and line != "Graph execution error:"]
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", (reasons or lines or [""])[-1])
    if len(reason) > 500:
        reason = reason[:500] + " ..."
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
