"""The fsspec filesystems behind the facade, opened with the backends' own retries off.

gcsfs wraps every request in its own retry loop (six tries, sleeps up to 32 s),
s3fs adds five and botocore more underneath. Stacked under storage/retry.py
that made up to 30 attempts per call and an unreachable endpoint took over
30 s to report, so here:

- gs://, gcs://: gcsfs's JSON-API filesystem with its request methods undecorated
  (gcsfs's own code, minus the retry loop) and a 5 s connect timeout (s3fs's
  default); gcsfs's experimental zonal-bucket class is not used;
- s3://, s3a://: s3fs with one try of its own and one of botocore's;
- anything else as fsspec opens it (local files, memory://, ...).

Options a caller sets (session_kwargs, config_kwargs["retries"]) win.
"""

from __future__ import annotations

import functools

import fsspec
from fsspec.core import split_protocol, url_to_fs

CONNECT_TIMEOUT = 5.0


@functools.cache
def _gcs_class() -> type:
    from gcsfs.core import GCSFileSystem

    class SingleTryGCSFileSystem(GCSFileSystem):
        """gcsfs without its retry decorator: storage/retry.py is the one retry layer."""

        _request = GCSFileSystem._request.__wrapped__
        _get_file_request = GCSFileSystem._get_file_request.__wrapped__
        _get_file_concurrent = GCSFileSystem._get_file_concurrent.__wrapped__

    SingleTryGCSFileSystem.__qualname__ = SingleTryGCSFileSystem.__name__  # picklable by name
    return SingleTryGCSFileSystem


def _gcs(options: dict) -> fsspec.AbstractFileSystem:
    import aiohttp
    session = dict(options.get("session_kwargs") or {})
    session.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
    return _gcs_class()(**{**options, "session_kwargs": session})


@functools.cache
def _s3_class() -> type:
    from s3fs import S3FileSystem

    class SingleTryS3FileSystem(S3FileSystem):
        """s3fs with one try of its own loop (a class attribute, not an option)."""

        retries = 1

    SingleTryS3FileSystem.__qualname__ = SingleTryS3FileSystem.__name__
    return SingleTryS3FileSystem


def _s3(options: dict) -> fsspec.AbstractFileSystem:
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("retries", {"total_max_attempts": 1})  # botocore's own retries
    return _s3_class()(**{**options, "config_kwargs": config})


def __getattr__(name: str) -> type:
    """The classes are built on first use (importing gcsfs or s3fs is not free); this finds
    them by name when an unpickled filesystem asks for its class."""
    builders = {"SingleTryGCSFileSystem": _gcs_class, "SingleTryS3FileSystem": _s3_class}
    if name in builders:
        return builders[name]()
    raise AttributeError(name)


_OPENERS = {"gs": _gcs, "gcs": _gcs, "s3": _s3, "s3a": _s3}


def open_filesystem(url: str, storage_options: dict | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path on it) for `url`."""
    protocol, _ = split_protocol(url)
    opener = _OPENERS.get((protocol or "").lower())
    if opener is None:
        return url_to_fs(url, **(storage_options or {}))
    fs = opener(dict(storage_options or {}))
    return fs, fs._strip_protocol(url)
