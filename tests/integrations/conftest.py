"""A real HTTP(S) receiver on 127.0.0.1 for webhook tests, scripted per test."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PORTS = range(8181, 8190)  # this engineer's port range (8180 is left for manual servers)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted reply: an HTTP status, or ("sleep", seconds, status)."""

    server: ThreadingHTTPServer
    scheme: str
    script: list = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/hooks/loupe") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def next_reply(self):
        return self.script.pop(0) if self.script else 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


def _handler(receiver_ref: list) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            receiver = receiver_ref[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            reply = receiver.next_reply()
            if isinstance(reply, tuple):
                time.sleep(reply[1])
                reply = reply[2]
            receiver.received.append(Received(self.path, dict(self.headers), body))
            payload = b'{"ok": true}' if reply < 300 else b"receiver says no"
            try:
                self.send_response(reply)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, *args):
            pass

    return Handler


def _serve(ssl_context: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    ref: list = []
    for port in PORTS:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), _handler(ref))
            break
        except OSError:
            continue
    else:
        raise RuntimeError(f"no free port in {PORTS}")
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server=server, scheme="https" if ssl_context else "http")
    ref.append(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    """Plain HTTP on 127.0.0.1, allowed by the test settings (production refuses both)."""
    settings.LOUPE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.LOUPE_WEBHOOK_ALLOW_HTTP = True
    settings.LOUPE_WEBHOOK_BACKOFF_SECONDS = 0
    settings.LOUPE_WEBHOOK_TIMEOUT = 2
    yield from _serve()


@pytest.fixture
def tls_receiver(settings, tmp_path) -> Iterator[Receiver]:
    """HTTPS on 127.0.0.1 with a certificate for hooks.example.test from a test CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("hooks.example.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings.LOUPE_WEBHOOK_CA_BUNDLE = str(bundle)
    settings.LOUPE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.LOUPE_WEBHOOK_ALLOW_HTTP = False
    settings.LOUPE_WEBHOOK_BACKOFF_SECONDS = 0
    yield from _serve(context)
