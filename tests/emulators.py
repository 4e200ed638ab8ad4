"""Local object-store emulators for tests and benchmarks.

Starts gcp-storage-emulator (GCS JSON API) and moto's standalone server (S3)
as child processes on 127.0.0.1 and free ports, waits until they answer, and
builds the fsspec storage options that point gcsfs / s3fs at them.
Nothing here talks to anything but loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
    endpoint: str
    bucket: str
    proc: subprocess.Popen
    storage_options: dict = field(default_factory=dict)

    def stop(self) -> None:
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


def start_gcs(bucket: str = "registry") -> Emulator:
    """gcp-storage-emulator, in memory, with `bucket` created."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_executable("gcp-storage-emulator"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", bucket, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    emu = Emulator("gcs", endpoint, bucket, proc, gcs_storage_options(endpoint))
    try:
        _wait_http(f"{endpoint}/storage/v1/b/{bucket}", proc)
    except Exception:
        emu.stop()
        raise
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
    emu = Emulator("s3", endpoint, bucket, proc, s3_storage_options(endpoint))
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
