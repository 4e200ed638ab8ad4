"""The storage facade: every read, write, list and delete of the project goes through a Store.

Like Beam's FileSystems, one narrow interface over whatever fsspec opens
(local disk, gs://, s3://, memory://), with what every caller needs done once:

- every backend call runs under the one retry layer (retry.with_retries);
- metadata reads drop fsspec's listing cache first: other publishers change
  the bucket behind our back;
- local writes are atomic (tf_bigexport.local_files); object writes are whole
  by nature;
- retry messages go through the redactor, so they never show a credential.

Paths are the filesystem's own (``store.join(...)`` builds them under the
root); ``uri_of`` turns one into the display URI for messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import BinaryIO, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import fsspec
from fsspec.registry import known_implementations, registry

from tf_bigexport import local_files
from tf_bigexport.suggestions import did_you_mean

from .errors import InvalidNameError
from .names import safe_relative_path, validate_relative_path
from .redact import Redactor
from .backends import open_filesystem
from .retry import RetryPolicy, with_retries
from .transfer import FileProgress
from .uris import display_uri, has_userinfo, is_uri, local_path

T = TypeVar("T")
READ_BLOCK = 8 << 20


def dump_json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def load_json_object(data: bytes) -> dict | None:
    """The JSON object `data` holds; None if it holds anything else or is not JSON."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Store:
    """A root in object storage (or on local disk) and every operation on what is under it."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, uri: str, *,
                 retry: RetryPolicy | None = None, redactor: Redactor | None = None) -> None:
        self.fs = fs
        self.root = root  # fs path, no trailing '/'
        self.uri = uri  # display form, no credentials
        self.retry = retry or RetryPolicy()
        self.redactor = redactor or Redactor()

    # -- layout
    @property
    def is_local(self) -> bool:
        protocols = self.fs.protocol
        return (protocols if isinstance(protocols, str) else protocols[0]) in ("file", "local")

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri_of(self, path: str) -> str:
        """Display URI of an fs path under the root."""
        if not path.startswith(self.root):
            raise InvalidNameError(f"{path!r} is outside {self.uri}")
        return self.uri + path[len(self.root):]

    def path_of(self, uri: str) -> str:
        """fs path of a display URI (or fs path) under the root; refuses anything outside."""
        if uri.startswith(self.uri + "/"):
            path = self.root + uri[len(self.uri):]
        elif uri.startswith(self.root + "/"):
            path = uri
        else:
            raise InvalidNameError(f"{display_uri(uri)!r} is not inside {self.uri}")
        validate_relative_path(path[len(self.root) + 1:], where=self.uri)
        return path

    def _call(self, what: str, path: str, action: Callable[[], T]) -> T:
        return with_retries(action, f"{what} {self.uri_of(path) if path.startswith(self.root) else path}",
                            self.retry, self.redactor.describe)

    def _fresh(self, what: str, path: str, action: Callable[[], T], missing: T) -> T:
        """`action()` with fsspec's cache of `path` dropped first (other publishers change the
        bucket behind our back), `missing` if the object is absent."""
        def attempt() -> T:
            self.fs.invalidate_cache(path)
            try:
                return action()
            except FileNotFoundError:
                return missing
        return self._call(what, path, attempt)

    # -- metadata
    def info(self, path: str) -> dict | None:
        found = self._fresh("stat", path, lambda: self.fs.info(path), None)
        return found if found is not None and found.get("type") == "file" else None

    def list_names(self, directory: str) -> list[str]:
        """Base names of the direct children of `directory` ([] when absent)."""
        entries = self._fresh("list", directory, lambda: self.fs.ls(directory, detail=False), [])
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})

    def find_files(self, directory: str) -> dict[str, dict]:
        """All files under `directory`, keyed by path relative to it, with their info."""
        found = self._fresh("list", directory, lambda: self.fs.find(directory, detail=True), {})
        prefix = self.fs._strip_protocol(directory).rstrip("/") + "/"
        out = {}
        for name, info in found.items():
            name = self.fs._strip_protocol(name)
            if info.get("type") == "file" and name.startswith(prefix):
                out[name[len(prefix):]] = info
        return out

    # -- reads
    def read_bytes(self, path: str) -> bytes | None:
        return self._fresh("read", path, lambda: self.fs.cat_file(path), None)

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        """Several small objects at once (concurrently on async backends); absent ones are left out."""
        if not paths:
            return {}

        def action():
            for path in paths:
                self.fs.invalidate_cache(path)
            raw = self.fs.cat(paths, on_error="return")
            for value in raw.values():
                if isinstance(value, Exception) and not isinstance(value, FileNotFoundError):
                    raise value
            return {p: bytes(v) for p, v in raw.items() if isinstance(v, (bytes, bytearray))}
        return self._call("read", paths[0], action)

    def read_stream(self, path: str, consume: Callable[[BinaryIO], T]) -> T:
        """`consume(stream)` over the whole object; a transient failure starts the read over."""
        def action():
            self.fs.invalidate_cache(path)  # s3fs would check the bytes against a stale ETag
            with self.fs.open(path, "rb", block_size=READ_BLOCK, cache_type="none") as stream:
                return consume(stream)
        return self._call("read", path, action)

    @contextlib.contextmanager
    def open(self, path: str, block_size: int = 1 << 20) -> Iterator[BinaryIO]:
        """A seekable file read by range on demand (a long-lived handle: not retried)."""
        self.fs.invalidate_cache(path)
        with self.fs.open(path, "rb", block_size=block_size) as f:
            yield f

    def download(self, directory: str, destination: str, paths: list[str] | None = None) -> list[str]:
        """Copy the files under `directory` (or just `paths`, relative to it) into a local directory.

        Object names come from storage other systems write to: one that could land
        outside `destination` ("m/1/../../x") is refused before anything is written.
        """
        wanted = sorted(self.find_files(directory)) if paths is None else list(paths)
        for rel in wanted:
            safe_relative_path(rel, where=self.uri_of(directory))
        for rel in wanted:
            target = os.path.join(destination, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self._call("download", f"{directory}/{rel}",
                       lambda rel=rel, target=target: self.fs.get_file(f"{directory}/{rel}", target))
        return wanted

    # -- writes
    def write_bytes(self, path: str, data: bytes) -> None:
        """Overwrite `path` whole (locally through a temporary file and a rename)."""
        def action():
            if self.is_local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                local_files.write_file(path, data, durable=True)
            else:
                self.fs.pipe_file(path, data)
            self.fs.invalidate_cache(path)
        self._call("write", path, action)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` only if it does not exist; False if it already did.

        Local: a complete temporary file hard-linked into place (the link fails if
        the name exists). Object stores: a create-only precondition (GCS
        ifGenerationMatch=0, S3 If-None-Match: *) through pipe_file(mode="create").
        """
        def action():
            try:
                if self.is_local:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    local_files.write_file(path, data, exclusive=True, durable=True)
                else:
                    self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            finally:
                self.fs.invalidate_cache(path)
            return True
        return self._call("create", path, action)

    def put_file(self, local: str, path: str, callback: FileProgress | None = None) -> None:
        """Upload one local file, streamed (gcsfs/s3fs send big files in chunks)."""
        def action():
            if callback is not None:
                callback.restart()
            if self.is_local:
                _copy_local(local, path)
            else:
                self.fs.put_file(local, path, **({} if callback is None else {"callback": callback}))
        self._call("upload", path, action)

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy of one object; locally a new file renamed into place."""
        self._call("copy", dst, lambda: _copy_local(src, dst) if self.is_local else self.fs.cp_file(src, dst))

    def remove_file(self, path: str) -> None:
        self._fresh("delete", path, lambda: self.fs.rm_file(path), None)
        self.fs.invalidate_cache(path)

    def remove_empty_dir(self, directory: str) -> None:
        """Local directories outlive their files; object stores have none to remove."""
        if self.is_local:
            with contextlib.suppress(OSError):
                os.rmdir(directory)

    def remove_tree(self, directory: str) -> None:
        self._fresh("delete", directory, lambda: self.fs.rm(directory, recursive=True), None)
        self.fs.invalidate_cache(directory)


def _copy_local(src: str, dst: str) -> None:
    """A new file renamed into place: never rewrite one in place."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with local_files.replacing(dst) as temporary:
        shutil.copyfile(src, temporary)


CREDENTIALS_HINT = ("pass credentials as storage options (--storage_options JSON or $TF_BIGEXPORT_STORAGE_OPTIONS, "
                    'e.g. {"key": ..., "secret": ...} for S3, {"token": "/path/to/key.json"} for GCS) or through '
                    "the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS), "
                    "never in the URI")


def uri_problem(uri: object) -> str | None:
    """Why `open_store` refuses `uri`, or None. The jobs-file validation asks the same
    question before any job runs."""
    if not isinstance(uri, str) or not uri.strip():
        return "URI is empty"
    shown = display_uri(uri).rstrip("/")
    if any(segment == ".." for segment in urlsplit(uri).path.split("/")):
        return f"URI {shown!r} must not contain '..'"
    parts = urlsplit(uri)
    if has_userinfo(uri):
        return f"URI {shown!r} carries credentials (user info before '@'): {CREDENTIALS_HINT}"
    if is_uri(uri) and (parts.query or parts.fragment):
        return (f"URI {shown!r} has a query string or fragment ('?...', '#...'); it would become part of "
                f"object names, or it is a token: {CREDENTIALS_HINT}")
    try:
        local = local_path(uri)
    except InvalidNameError as exc:
        return str(exc)
    if local is None:
        scheme = uri.split("://", 1)[0].lower()
        known = set(known_implementations) | set(registry)
        if scheme not in known:
            return (f"unsupported URI scheme {uri.split('://', 1)[0]!r}{did_you_mean(scheme, known)}: "
                    "use a local directory or gs://, s3://, file:// (any fsspec protocol)")
    return None


def open_store(uri: str, storage_options: dict | None = None, *, retry: RetryPolicy | None = None) -> Store:
    """The Store at `uri`: a local path, file://, gs://, s3://, memory://, any fsspec URL."""
    problem = uri_problem(uri)
    if problem:
        raise InvalidNameError(problem)
    shown = display_uri(uri).rstrip("/")
    local = local_path(uri)
    redactor = Redactor(storage_options)
    fs, root = open_filesystem(local if local is not None else uri, storage_options)
    root = root.rstrip("/")
    if not root:
        raise InvalidNameError(f"URI {shown!r} names no bucket or directory")
    return Store(fs, root, shown, retry=retry, redactor=redactor)
