"""tf-bigexport: export very large TensorFlow models and publish them to object storage.

Everything lives under this one import name so that nothing generic lands in
site-packages. The repository keeps each layer in its own top-level folder;
pyproject.toml maps them here:

    tf_bigexport.imageformat   the on-disk format (Riegeli, chunks, save/load)
    tf_bigexport.storage       object storage through fsspec, publishing protocol
    tf_bigexport.transforms    the Beam stages
    tf_bigexport.pipeline      job specs, the Beam graph, the CLI
    tf_bigexport.registries    the JSON index, MLflow
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("tf-bigexport")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
