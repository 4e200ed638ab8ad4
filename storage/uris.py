"""Registry URIs, the filesystem behind them, and the names allowed inside.

Names become object keys, so they are validated before any I/O: no empty
segments, no '.' or '..', no absolute paths, a small character set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.core import url_to_fs

from .errors import InvalidNameError

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_JOB_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._+=@,~-]{1,255}$")
MAX_VERSION = 2**63 - 1  # TensorFlow Serving versions are int64


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"model name {name!r} is invalid: use 1-128 of [A-Za-z0-9._-], "
            "starting with a letter or digit, without '..'"
        )
    return name


def validate_job_key(job_key: str) -> str:
    if not isinstance(job_key, str) or not _JOB_KEY.match(job_key) or ".." in job_key:
        raise InvalidNameError(
            f"job key {job_key!r} is invalid: use 1-200 of [A-Za-z0-9._=-], "
            "starting with a letter or digit, without '..'"
        )
    return job_key


def validate_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= MAX_VERSION:
        raise InvalidNameError(f"version {version!r} is invalid: must be an integer in 1..2**63-1")
    return version


def validate_relative_path(path: str, *, where: str = "") -> str:
    """A posix path relative to a model directory: no absolute, empty, '.' or '..' parts."""
    prefix = f"{where}: " if where else ""
    if not isinstance(path, str) or not path:
        raise InvalidNameError(f"{prefix}empty object path")
    if path.startswith("/") or "\\" in path:
        raise InvalidNameError(f"{prefix}object path {path!r} must be relative and use '/'")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidNameError(f"{prefix}object path {path!r} has an empty, '.' or '..' segment")
        if not _PATH_SEGMENT.match(segment):
            raise InvalidNameError(
                f"{prefix}object path {path!r}: segment {segment!r} has characters "
                "outside [A-Za-z0-9._+=@,~-]"
            )
    return path


def display_uri(uri: str) -> str:
    """The URI without user info or query: safe to log and to record."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # plain path (or a Windows drive)
        return uri
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Location:
    """A registry root: the filesystem, its root path on it, and a printable URI."""

    fs: fsspec.AbstractFileSystem
    root: str  # path in fs terms, no trailing '/'
    uri: str  # display form, no credentials

    @property
    def protocol(self) -> str:
        proto = self.fs.protocol
        return proto[0] if isinstance(proto, (tuple, list)) else proto

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri_of(self, path: str) -> str:
        """Display URI of an fs path under the root."""
        if not path.startswith(self.root):
            raise InvalidNameError(f"{path!r} is outside the registry {self.uri}")
        return self.uri + path[len(self.root):]

    def path_of(self, uri: str) -> str:
        """fs path of a display URI (or fs path) under the root; refuses anything outside."""
        if uri.startswith(self.uri + "/"):
            path = self.root + uri[len(self.uri):]
        elif uri.startswith(self.root + "/"):
            path = uri
        else:
            raise InvalidNameError(f"{display_uri(uri)!r} is not inside the registry {self.uri}")
        validate_relative_path(path[len(self.root) + 1:], where=self.uri)
        return path


def open_location(uri: str, storage_options: dict | None = None) -> Location:
    """Resolve a registry URI (path, file://, gs://, s3://, memory://, ...) to a Location."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidNameError("registry URI is empty")
    shown = display_uri(uri).rstrip("/")
    if any(seg == ".." for seg in urlsplit(uri).path.split("/")):
        raise InvalidNameError(f"registry URI {shown!r} must not contain '..'")
    fs, root = url_to_fs(uri, **(storage_options or {}))
    root = root.rstrip("/")
    if not root:
        raise InvalidNameError(f"registry URI {shown!r} names no bucket or directory")
    return Location(fs=fs, root=root, uri=shown)
