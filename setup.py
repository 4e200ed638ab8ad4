"""Native parts of the build; everything else lives in pyproject.toml."""
from setuptools import Extension, setup


def _native(name: str) -> Extension:
    """imageformat/<name>.c built as tf_bigexport.imageformat.<name>."""
    return Extension(f"tf_bigexport.imageformat.{name}", sources=[f"imageformat/{name}.c"],
                     extra_compile_args=["-O3", "-std=c11"])


setup(
    # Here, not in pyproject: Beam's stager builds the Dataflow sdist with the launching
    # environment's setuptools (65.5 in a fresh Python 3.10/3.11 venv), which refuses
    # pyproject's SPDX string, while setuptools 77+ warns about the table form.
    license="Apache-2.0",
    ext_modules=[
        _native("_highwayhash"),  # HighwayHash-64 of Riegeli headers and data
        _native("_bytesfiller"),  # bytes objects the Riegeli reader fills in place
        _native("_protoscan"),  # message counts of serialized protos before parsing
    ]
)
