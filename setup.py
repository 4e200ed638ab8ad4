"""Native parts of the build; everything else lives in pyproject.toml."""
from setuptools import Extension, setup


def _native(name: str) -> Extension:
    """imageformat/<name>.c built as tf_bigexport.imageformat.<name>."""
    return Extension(f"tf_bigexport.imageformat.{name}", sources=[f"imageformat/{name}.c"],
                     extra_compile_args=["-O3", "-std=c11"])


setup(
    ext_modules=[
        _native("_highwayhash"),  # HighwayHash-64 of Riegeli headers and data
        _native("_bytesfiller"),  # bytes objects the Riegeli reader fills in place
        _native("_protoscan"),  # message counts of serialized protos before parsing
    ]
)
