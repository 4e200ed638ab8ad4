"""Publishing versioned SavedModel directories to object storage (fsspec; no TensorFlow).

See registry.py for the on-storage layout and record.py for the release record schema.
"""

from .errors import (InvalidNameError, Mismatch, StorageError, VerificationError,
                     VersionConflictError)
from .manifest import FileEntry, Manifest, build_manifest
from .record import ReleaseRecord
from .registry import PUBLISH_STEPS, Registry
from .release_state import VersionState
from .transfer import RetryPolicy, is_transient
from .versions import VersionPolicy

__all__ = [
    "FileEntry", "InvalidNameError", "Manifest", "Mismatch", "PUBLISH_STEPS", "Registry",
    "ReleaseRecord", "RetryPolicy", "StorageError", "VerificationError",
    "VersionConflictError", "VersionPolicy", "VersionState", "build_manifest", "is_transient",
]
