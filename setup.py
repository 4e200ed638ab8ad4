"""Native parts of the build; everything else lives in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tf_bigexport.imageformat._highwayhash",
            sources=["imageformat/_highwayhash.c"],
            extra_compile_args=["-O3", "-std=c11"],
        )
    ]
)
