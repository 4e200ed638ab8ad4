"""The one retry layer (error classification by type, bounded attempts and time, fast failure
on an unreachable endpoint), streaming and progress of transfers."""

from __future__ import annotations

import errno
import io
import logging
import threading
import time

import pytest

from emulators import free_port, gcs_storage_options, s3_storage_options
from fault_proxy import FaultProxy
from tf_bigexport.storage import Registry, StorageError, VersionPolicy, is_transient
from tf_bigexport.storage.manifest import checksum_stream
from tf_bigexport.storage.progress import Progress
from tf_bigexport.storage.retry import RetryPolicy, is_unreachable
from tf_bigexport.storage.transfer import run_parallel
from storage_testkit import make_export, read_tree, export_files

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


def test_classification_of_real_backend_errors():
    import aiohttp
    from botocore.exceptions import ClientError, EndpointConnectionError
    from gcsfs.retry import HttpError

    def client_error(code, status):
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    transient = [HttpError({"code": 503, "message": "busy"}), HttpError({"code": 429, "message": "slow"}),
                 client_error("SlowDown", 503), client_error("InternalError", 500),
                 ConnectionResetError(errno.ECONNRESET, "reset"), TimeoutError("t"),
                 aiohttp.ServerDisconnectedError(), EndpointConnectionError(endpoint_url="http://x"),
                 OSError(errno.ETIMEDOUT, "timed out")]
    permanent = [HttpError({"code": 403, "message": "no"}), HttpError({"code": 412, "message": "pre"}),
                 HttpError({"code": 404, "message": "nf"}), client_error("AccessDenied", 403),
                 client_error("PreconditionFailed", 412), FileNotFoundError("x"),
                 FileExistsError("x"), PermissionError("x"), ValueError("bad")]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)
    wrapped = OSError("wrapped")
    wrapped.__cause__ = client_error("ServiceUnavailable", 503)
    assert is_transient(wrapped)
    refused = aiohttp.ClientConnectorError(None, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert is_unreachable(refused) and is_unreachable(EndpointConnectionError(endpoint_url="http://x"))
    assert not is_unreachable(aiohttp.ServerDisconnectedError())


def test_classification_is_by_type_not_by_name():
    class ServerDisconnectedError(Exception):  # someone else's error that only shares a name
        pass

    class ProxyError(Exception):
        pass

    assert not is_transient(ServerDisconnectedError("x")) and not is_transient(ProxyError("y"))


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_unreachable_endpoint_fails_within_ten_seconds_naming_it(kind, tmp_path):
    """Nothing listens on the port: the backends' own retries are off, ours give up within
    RetryPolicy.unreachable_within, and the error says which endpoint."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    options = gcs_storage_options(endpoint) if kind == "gcs" else s3_storage_options(endpoint)
    registry = Registry(f"{'gs' if kind == 'gcs' else 's3'}://registry/unreachable", storage_options=options)
    export = make_export(tmp_path / "e", big=1000)
    start = time.monotonic()
    with pytest.raises(StorageError) as caught:
        registry.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-u")
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"took {elapsed:.1f} s"
    message = str(caught.value)
    assert endpoint.split("//")[1] in message, message
    assert "gave up after" in message


@pytest.mark.parametrize("kind", ["gcs", "s3"])
def test_one_retry_layer_bounds_the_attempts(kind, request, tmp_path):
    """A store that answers 503 to everything sees exactly `attempts` requests per call, not
    attempts x the backend's own retries."""
    emulator = request.getfixturevalue(f"{kind}_emulator")
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    with FaultProxy(emulator.endpoint, rate=1.0, budget=1000, max_in_a_row=1000, kinds=("503",)) as proxy:
        options = (gcs_storage_options(proxy.endpoint) if kind == "gcs"
                   else s3_storage_options(proxy.endpoint))
        registry = Registry(emulator.uri(f"busy-{time.monotonic_ns()}"), storage_options=options, retry=policy)
        start = time.monotonic()
        with pytest.raises(StorageError, match="gave up after 3 attempts"):
            registry.release_state("m", 1)
    assert proxy.requests == policy.attempts, proxy.injected
    assert time.monotonic() - start < 5


def test_publish_survives_transient_upload_and_copy_failures(remote_target, tmp_path, monkeypatch, caplog):
    reg = remote_target.registry(retry=FAST)
    fs = reg.filesystem
    failures = {"put": set(), "copy": set()}
    lock = threading.Lock()
    real_put, real_cp = fs.put_file, fs.cp_file

    def first_call_fails(kind, key):
        with lock:
            if key in failures[kind]:
                return False
            failures[kind].add(key)
            return True

    def put_file(lpath, rpath, *args, **kwargs):
        if first_call_fails("put", rpath):
            raise ConnectionResetError(errno.ECONNRESET, "injected reset")
        return real_put(lpath, rpath, *args, **kwargs)

    def cp_file(src, dst, *args, **kwargs):
        if first_call_fails("copy", dst):
            raise TimeoutError("injected timeout")
        return real_cp(src, dst, *args, **kwargs)

    monkeypatch.setattr(fs, "put_file", put_file)
    monkeypatch.setattr(fs, "cp_file", cp_file)
    export = make_export(tmp_path / "e")
    with caplog.at_level(logging.WARNING, logger="storage"):
        record = reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-r")
    assert reg.verify_version("m", record.version) == []
    assert len(failures["put"]) == len(export_files(export))
    assert "injected reset" in caplog.text
    assert len(failures["copy"]) == len(export_files(export))
    assert "injected timeout" in caplog.text


def test_permanent_upload_failure_is_not_retried(remote_target, tmp_path, monkeypatch):
    reg = remote_target.registry(retry=FAST)
    calls = []

    def put_file(lpath, rpath, *args, **kwargs):
        calls.append(rpath)
        raise PermissionError(f"403 Forbidden: {rpath}")

    monkeypatch.setattr(reg.filesystem, "put_file", put_file)
    export = make_export(tmp_path / "e")
    with pytest.raises(StorageError, match="PermissionError: 403 Forbidden"):
        reg.publish(str(export), "m", VersionPolicy.next_integer(), {}, "job-p")
    assert len(calls) <= reg.workers and len(set(calls)) == len(calls)  # no file tried twice
    assert reg.list_versions("m") == []
    fs = remote_target.filesystem()
    assert read_tree(fs, fs._strip_protocol(remote_target.uri) + "/.staging") == {}


class _CountingStream(io.RawIOBase):
    def __init__(self, size):
        self.left, self.reads = size, []

    def readable(self):
        return True

    def read(self, n=-1):
        assert n > 0, "whole-stream read"
        take = min(n, self.left)
        self.left -= take
        self.reads.append(take)
        return b"\0" * take


def test_checksums_stream_in_bounded_chunks():
    stream = _CountingStream(5_000_000)
    summer = checksum_stream(stream, chunk_size=1 << 20)
    assert summer.size == 5_000_000 and max(stream.reads) == 1 << 20


def test_progress_tty_line_and_plain_log_lines(caplog):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    progress = Progress("stage x", total_bytes=3 << 20, total_files=2, stream=tty)
    progress.add_bytes(1 << 20)
    progress.file_done("a", 1 << 20)
    progress.add_bytes(2 << 20)
    progress.file_done("b", 2 << 20)
    progress.close()
    assert "\rstage x: 3.0 MiB/3.0 MiB 2/2 files" in tty.getvalue()
    assert "/s" in tty.getvalue()

    plain = io.StringIO()
    with caplog.at_level(logging.INFO, logger="storage"):
        progress = Progress("stage y", total_bytes=10, total_files=1, stream=plain)
        progress.add_bytes(10)
        progress.file_done("f.bin", 10)
        progress.close()
    assert plain.getvalue() == ""  # no control characters where nobody watches
    assert "stage y: f.bin (10 B) done, 1/1 files" in caplog.text
    assert "stage y: finished 1 files" in caplog.text


def test_run_parallel_bounds_concurrency_and_propagates_failure():
    active, peak = [0], [0]
    lock = threading.Lock()

    def task():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threading.Event().wait(0.01)
        with lock:
            active[0] -= 1
        return 1

    assert run_parallel([task] * 20, 3) == [1] * 20
    assert peak[0] <= 3

    def boom():
        raise KeyError("bad")

    with pytest.raises(KeyError):
        run_parallel([task, boom, task], 2)
