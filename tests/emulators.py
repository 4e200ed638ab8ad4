r"""Local object-store emulators for tests and benchmarks.

Starts gcp-storage-emulator (GCS JSON API) and moto's standalone server (S3)
as child processes on 127.0.0.1 and free ports, waits until they answer, and
builds the fsspec storage options that point gcsfs / s3fs at them.
Nothing here talks to anything but loopback.

gcp-storage-emulator differs from GCS in two ways that matter to a publisher,
and `GcsConformanceProxy` (in front of it; what tests talk to) makes it
behave like GCS, so production code needs no emulator workarounds:
- it ignores ifGenerationMatch=0: a second create-only upload silently
  overwrites. The proxy answers 412 when the object exists, as GCS does, with
  the check and the write under one lock.
- its multipart upload parser drops a trailing b"\r" from the content (it
  reads gcsfs's "\n" delimiter as "\r\n"). The proxy turns multipart uploads
  into media uploads of exactly the content.
moto's server is used as it is (it honours If-None-Match: *).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fault_proxy import LoopbackProxy, Response, json_error

# gcsfs probes for zonal/HNS buckets through an API the emulator lacks.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

_BIN = Path(sys.executable).parent
FAKE_AWS_KEY_ID = "AKIAFAKEFAKEFAKE0000"
FAKE_AWS_SECRET = "fake-secret-Zq9LrT4mW2xYv7Kp"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited early with code {proc.returncode}: {url}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"emulator did not answer within {timeout}s: {url}")


def _executable(name: str) -> str:
    local = _BIN / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class Emulator:
    """A running emulator process and how to reach it."""

    kind: str  # "gcs" | "s3"
    endpoint: str  # what clients use (for GCS: the conformance proxy)
    bucket: str
    proc: subprocess.Popen
    storage_options: dict = field(default_factory=dict)
    upstream: str = ""  # the emulator itself, behind any proxy
    proxy: LoopbackProxy | None = None

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def filesystem(self):
        """A fresh (uncached) fsspec filesystem talking to this emulator."""
        import fsspec

        protocol = "gs" if self.kind == "gcs" else "s3"
        return fsspec.filesystem(protocol, skip_instance_cache=True, **self.storage_options)

    def uri(self, prefix: str) -> str:
        scheme = "gs" if self.kind == "gcs" else "s3"
        return f"{scheme}://{self.bucket}/{prefix}"

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def gcs_storage_options(endpoint: str) -> dict:
    return {"token": "anon", "endpoint_url": endpoint, "project": "test-project"}


def s3_storage_options(endpoint: str) -> dict:
    return {
        "key": FAKE_AWS_KEY_ID,
        "secret": FAKE_AWS_SECRET,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


class GcsConformanceProxy(LoopbackProxy):
    """Makes gcp-storage-emulator honour create-only uploads and keep every byte (see above)."""

    rewrite_host = False  # resumable upload Locations then point back here

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._writes = threading.Lock()

    def _exists(self, bucket: str, name: str) -> bool:
        status, _, _ = self.forward("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}",
                                    {}, b"")
        return status == 200

    def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response | str:
        parts = urlsplit(path)
        if method not in ("POST", "PUT") or not parts.path.startswith("/upload/storage/v1/b/"):
            return self.forward(method, path, headers, body)
        query = parse_qs(parts.query)
        bucket = parts.path.split("/")[5]
        name = (query.get("name") or [None])[0]
        if query.get("uploadType") == ["multipart"]:
            meta, content_type, body = _split_multipart(headers.get("Content-Type", ""), body)
            name = query.get("name", [meta["name"]])[0]
            query.update(uploadType=["media"], name=[name])
            path = f"{parts.path}?{urlencode(query, doseq=True)}"
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = content_type
        if query.get("ifGenerationMatch") != ["0"] or not name:
            return self.forward(method, path, headers, body)  # unconditional uploads run side by side
        with self._writes:  # the existence check and the create-only write are one step, as in GCS
            if self._exists(bucket, name):
                return json_error(412, "At least one of the pre-conditions you specified did not hold.")
            return self.forward(method, path, headers, body)


def _split_multipart(content_type: str, body: bytes) -> tuple[dict, str, bytes]:
    """(metadata, content type, content) of a two-part upload body, line endings as the client wrote them."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    delimiter = b"--" + boundary
    newline = b"\r\n" if body.startswith(delimiter + b"\r\n") else b"\n"
    parts = body.split(newline + delimiter)
    first = parts[0][len(delimiter) + len(newline):]
    meta = json.loads(first.split(newline * 2, 1)[1])
    head, content = parts[1][len(newline):].split(newline * 2, 1)
    content_type = next((line.split(b":", 1)[1].strip().decode() for line in head.split(newline)
                         if line.lower().startswith(b"content-type:")), "application/octet-stream")
    return meta, content_type, content


def start_gcs(bucket: str = "registry") -> Emulator:
    """gcp-storage-emulator, in memory, with `bucket` created, behind a GcsConformanceProxy."""
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_executable("gcp-storage-emulator"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", bucket, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    emu = Emulator("gcs", upstream, bucket, proc, gcs_storage_options(upstream), upstream=upstream)
    try:
        _wait_http(f"{upstream}/storage/v1/b/{bucket}", proc)
        emu.proxy = GcsConformanceProxy(upstream).start()
    except Exception:
        emu.stop()
        raise
    emu.endpoint = emu.proxy.endpoint
    emu.storage_options = gcs_storage_options(emu.endpoint)
    return emu


def start_s3(bucket: str = "registry") -> Emulator:
    """moto's standalone server with `bucket` created."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=FAKE_AWS_KEY_ID,
               AWS_SECRET_ACCESS_KEY=FAKE_AWS_SECRET, AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen(
        [_executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    emu = Emulator("s3", endpoint, bucket, proc, s3_storage_options(endpoint), upstream=endpoint)
    try:
        _wait_http(f"{endpoint}/moto-api/", proc)
        emu.filesystem().call_s3("create_bucket", Bucket=bucket)
    except Exception:
        emu.stop()
        raise
    return emu


def main(argv: list[str] | None = None) -> int:
    """`python tests/emulators.py gcs|s3`: run one emulator until Ctrl-C."""
    args = argv if argv is not None else sys.argv[1:]
    kind = args[0] if args else "gcs"
    emu = start_gcs() if kind == "gcs" else start_s3()
    print(f"{kind} emulator at {emu.endpoint}, bucket {emu.bucket!r}; Ctrl-C stops it", flush=True)
    try:
        emu.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
