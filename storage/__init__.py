"""Publishing versioned SavedModel directories to object storage (fsspec; no TensorFlow).

The only package that touches storage: `open_store` / `Store` (objects.py) is
the facade every other layer reads and writes through; `Registry`
(registry.py) publishes versions on top of it. See registry.py for the
on-storage layout and record.py for the release record schema.
"""

from .errors import (InvalidNameError, Mismatch, StorageError, VerificationError,
                     VersionConflictError)
from .manifest import FileEntry, Manifest, build_manifest
from .names import safe_relative_path
from .objects import Store, open_store, uri_problem
from .record import ReleaseRecord
from .registry import PUBLISH_STEPS, Registry
from .release_state import VersionState
from .retry import RetryPolicy, is_transient
from .uris import display_uri, is_remote, is_uri, local_path, options_for
from .version_download import checked_local_version, download_version, local_directory, release_record_of
from .versions import VersionPolicy

__all__ = [
    "FileEntry", "InvalidNameError", "Manifest", "Mismatch", "PUBLISH_STEPS", "Registry", "ReleaseRecord",
    "RetryPolicy", "StorageError", "Store", "VerificationError", "VersionConflictError", "VersionPolicy",
    "VersionState", "build_manifest", "checked_local_version", "display_uri", "download_version", "is_remote",
    "is_transient", "is_uri", "local_directory", "local_path", "open_store", "options_for", "release_record_of",
    "safe_relative_path", "uri_problem",
]
