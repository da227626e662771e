"""A local HTTP server playing Rekognition's DetectLabels for the benchmarks, reached by the real
``rekognition`` backend module through ``AWS_ENDPOINT_URL_REKOGNITION`` (boto3 signs and sends a
real request; only the answer is made up). Each benchmark says what to answer with ``answer``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[dict], tuple[int, dict]]  # the request's JSON -> (HTTP status, JSON body)


class RekognitionStub:
    """A threaded server on 127.0.0.1:``port`` answering every POST with ``answer(request)``;
    ``calls`` counts the requests (under a lock: the server is threaded)."""

    def __init__(self, port: int, answer: Answer) -> None:
        self.calls, self._lock, stub = 0, threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with stub._lock:
                    stub.calls += 1
                status, body = answer(request)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def start(self) -> RekognitionStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
