"""Runs SavedModel signatures with stock TensorFlow, never importing tf_bigexport.

    python stock_tensorflow_runner.py MODEL_DIR INPUTS.npz OUTPUTS.npz [MODEL_DIR INPUTS OUTPUTS ...]

INPUTS.npz holds "<signature>/<input name>" arrays; OUTPUTS.npz gets
"<signature>/<output name>". The model is loaded with tf.saved_model.load; the
process fails if anything imported tf_bigexport along the way.
"""
import os
import sys

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(model_dir: str, inputs_path: str, outputs_path: str) -> None:
    loaded = tf.saved_model.load(model_dir)
    feeds: dict[str, dict[str, np.ndarray]] = {}
    with np.load(inputs_path) as inputs:
        for key in inputs.files:
            signature, name = key.split("/", 1)
            feeds.setdefault(signature, {})[name] = inputs[key]
    outputs = {}
    for signature, arrays in feeds.items():
        result = loaded.signatures[signature](**{name: tf.constant(value) for name, value in arrays.items()})
        outputs.update({f"{signature}/{name}": value.numpy() for name, value in result.items()})
    np.savez(outputs_path, **outputs)


def _in_repo(module: object) -> bool:
    """A module loaded from the repository's sources (not from the environment inside it)."""
    path = os.path.abspath(getattr(module, "__file__", None) or "/")
    if path == os.path.abspath(__file__):  # this runner (as __main__ and __mp_main__)
        return False
    return path.startswith(REPO + os.sep) and not path.startswith(os.path.abspath(sys.prefix) + os.sep)


def main(argv: list[str]) -> None:
    if not argv or len(argv) % 3:
        sys.exit(__doc__)
    for start in range(0, len(argv), 3):
        run(*argv[start:start + 3])
    project = sorted(name for name, module in list(sys.modules.items())
                     if name.split(".")[0] == "tf_bigexport" or _in_repo(module))
    if project:
        sys.exit(f"stock TensorFlow run imported the project: {project}")


if __name__ == "__main__":
    main(sys.argv[1:])
