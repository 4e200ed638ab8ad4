"""Which TensorFlow this project supports, checked before any internal is touched.

tf-bigexport does not depend on a TensorFlow distribution (an environment
keeps the build it has: tensorflow, tensorflow-cpu, a GPU, ROCm or Intel
build, or one built from source); it needs one of the minors below, each
tested by `make test-compat`. This module imports nothing heavy itself.
"""
from __future__ import annotations

import re
from types import ModuleType

# Every minor `make test-compat` passes on (tools/compat.py's MATRIX, the README's table).
SUPPORTED_MINORS = ("2.15", "2.16", "2.17", "2.18", "2.19", "2.20", "2.21")
SUPPORTED_RANGE = f"{SUPPORTED_MINORS[0]} to {SUPPORTED_MINORS[-1]}"
INSTALL_HINT = ("pip install 'tf-bigexport[cpu]' (tensorflow-cpu) or 'tf-bigexport[gpu]' "
                "(tensorflow[and-cuda]) in a fresh environment, or install your own TensorFlow build")


class UnsupportedTensorFlowError(ImportError):
    """TensorFlow is missing, outside the supported range, or lacks an internal we rely on."""


def minor_of(version: str) -> str | None:
    """'2.18' for '2.18.1', '2.18.0rc1' or '2.18.0-dev20250101'; None if unreadable."""
    match = re.match(r"(\d+)\.(\d+)\.", version)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def check_version(version: str) -> None:
    """Raises UnsupportedTensorFlowError unless ``version`` is a supported minor."""
    if minor_of(version) not in SUPPORTED_MINORS:
        raise UnsupportedTensorFlowError(
            f"tf-bigexport supports TensorFlow {SUPPORTED_RANGE}; the installed TensorFlow is {version}")


def check_installed() -> None:
    """The same check as import_tensorflow, from the installed distribution's metadata: for a
    process that leaves TensorFlow to its child processes. A build without metadata passes here
    (import_tensorflow checks it where it is imported)."""
    import importlib.metadata
    import importlib.util
    if importlib.util.find_spec("tensorflow") is None:
        raise UnsupportedTensorFlowError(
            f"tf-bigexport needs TensorFlow {SUPPORTED_RANGE} and none is installed: {INSTALL_HINT}")
    for distribution in importlib.metadata.packages_distributions().get("tensorflow", []):
        check_version(importlib.metadata.version(distribution))


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, or an UnsupportedTensorFlowError that says what to install."""
    try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise UnsupportedTensorFlowError(
            f"tf-bigexport needs TensorFlow {SUPPORTED_RANGE} and none is installed: {INSTALL_HINT}") from None
    check_version(tf.__version__)
    return tf
