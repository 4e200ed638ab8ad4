"""HTTP proxies on 127.0.0.1 between a client (gcsfs, s3fs) and an emulator.

`LoopbackProxy` forwards every request; subclasses decide per request what to
do instead. `FaultProxy` injects faults, chosen per request with a seeded generator:
  "503", "500", "429"  an error status, the request never reaches the emulator;
  "reset"              the connection is reset before anything is forwarded;
  "lost_response"      the request is forwarded (the emulator acts on it), then the
                       connection is reset: the client cannot tell whether it happened;
  "403"                (permanent mode only) forbidden, for requests matching a pattern.
A request is never failed more than `max_in_a_row` times in a row, so the
client's retries can get through; the total is capped by `budget`.
"""
from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TRANSIENT = ("503", "500", "429", "reset", "lost_response")
RESET = "reset"  # what respond() returns to drop the connection
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                "proxy-authorization", "proxy-authenticate", "content-length", "host"}

Response = tuple[int, list[tuple[str, str]], bytes]


def json_error(status: int, message: str) -> Response:
    body = b'{"error": {"code": %d, "message": "%s"}}' % (status, message.encode())
    return status, [("Content-Type", "application/json")], body


class LoopbackProxy:
    """Forwards every request to `upstream`; override `respond` to do something else."""

    # False: the upstream sees the client's Host (URLs it builds, e.g. resumable
    # upload Locations, then point back at this proxy).
    rewrite_host = True

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "LoopbackProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
            sent["Host"] = (f"{self.upstream_host}:{self.upstream_port}" if self.rewrite_host
                            else headers.get("Host", f"{self.upstream_host}:{self.upstream_port}"))
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response | str:
        """The response to send back, or RESET to drop the connection."""
        return self.forward(method, path, headers, body)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _reset(self) -> None:
                # SO_LINGER 0: close sends RST, what a dropped connection looks like to the client
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = proxy.respond(self.command, self.path, dict(self.headers.items()), body)
                if answer == RESET:
                    self._reset()
                    return
                status, headers, data = answer
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                # a HEAD answer has no body but says how long the object is
                length = next((v for k, v in headers if k.lower() == "content-length"), None)
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):  # the client gave up on the answer
                        self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream: str, *, seed: int = 0, rate: float = 0.2, budget: int = 40,
                 kinds: tuple[str, ...] = TRANSIENT, max_in_a_row: int = 2,
                 forbid: str | None = None) -> None:
        super().__init__(upstream)
        self.rng = random.Random(seed)
        self.rate, self.budget, self.kinds, self.max_in_a_row = rate, budget, kinds, max_in_a_row
        self.forbid = re.compile(forbid) if forbid else None
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._in_a_row: Counter[str] = Counter()
        self._lock = threading.Lock()

    def choose(self, method: str, path: str) -> str | None:
        """The fault for this request, or None to pass it through."""
        with self._lock:
            self.requests += 1
            if self.forbid is not None:
                if self.forbid.search(f"{method} {path}"):
                    self.injected["403"] += 1
                    return "403"
                return None
            key = f"{method} {path}"
            if (sum(self.injected.values()) >= self.budget or self._in_a_row[key] >= self.max_in_a_row
                    or self.rng.random() >= self.rate):
                self._in_a_row[key] = 0
                return None
            kind = self.rng.choice(self.kinds)
            self._in_a_row[key] += 1
            self.injected[kind] += 1
            return kind

    def respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response | str:
        fault = self.choose(method, path)
        if fault in ("503", "500", "429", "403"):
            return json_error(int(fault), "injected by fault_proxy")
        if fault == "reset":
            return RESET
        answer = self.forward(method, path, headers, body)
        return RESET if fault == "lost_response" else answer
