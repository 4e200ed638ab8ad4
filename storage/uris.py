"""Storage URIs as text: which are local, how they are shown, which are refused.

Pure string functions (no filesystem), so the jobs-file validation and the CLI
apply the same rules as the storage layer before any work starts.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidNameError


def _scheme(location: str) -> str | None:
    scheme, sep, _ = location.partition("://")
    return scheme.lower() if sep and scheme and "/" not in scheme else None


def local_path(location: str) -> str | None:
    """The local path `location` names, or None if it is a remote URI.

    A plain path is itself; ``file:///p`` and RFC 8089's ``file://localhost/p``
    are ``/p``. A file URI naming another host is refused: it is no local path.
    """
    scheme = _scheme(location)
    if scheme is None:
        return location
    if scheme != "file":
        return None
    rest = location.split("://", 1)[1]
    host, slash, path = rest.partition("/")
    if host.lower() in ("", "localhost"):
        return slash + path
    raise InvalidNameError(f"{display_uri(location)!r}: a file:// URI must name a local path "
                           f"(file:///path or file://localhost/path), not the host {host!r}")


def options_for(location: str, registry: str, storage_options: dict | None) -> dict | None:
    """The registry's storage options (endpoint, credentials) for another location on the same
    backend (scheme); None for a local path or another backend, which use their own defaults."""
    scheme = _scheme(location)
    return dict(storage_options or {}) if scheme not in (None, "file") and scheme == _scheme(registry) else None


def is_uri(location: str) -> bool:
    """True if `location` has a scheme (gs://, s3://, file://, ...), False for a plain path."""
    return _scheme(location) is not None


def is_remote(location: str) -> bool:
    """True for object-store URIs (gs://, s3://, memory://, ...); False for local paths and file://."""
    return local_path(location) is None


# user[:password]@ after the scheme; a password may hold '/' (AWS secret keys do), which
# a URL parser would read as the start of the path: "s3://KEY:SE/CRET@bucket/p".
USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/@\s]+|[^@\s]*:[^@\s]*)@")


def has_userinfo(uri: str) -> bool:
    return USERINFO.match(uri) is not None


def strip_userinfo(uri: str) -> str:
    return USERINFO.sub(lambda m: m.group("scheme"), uri, count=1)


def display_uri(uri: str) -> str:
    """The URI without user info, query or fragment: safe to log and to record."""
    if not is_uri(uri):
        return uri
    parts = urlsplit(strip_userinfo(uri))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
