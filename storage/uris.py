"""Registry URIs and the filesystem behind them (names allowed inside: names.py)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.core import url_to_fs

from .errors import InvalidNameError
from .names import validate_relative_path


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
