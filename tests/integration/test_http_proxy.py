"""The streaming relay behind the Jupyter proxy, against a real upstream HTTP server: a
compressed answer arrives as sent (bytes and ``content-encoding`` together), so the caller can
decode it; hop-by-hop headers do not cross."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from gpucloud.api import http_proxy

BODY = b'{"version": "2.14.0"}' * 200


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        wants_gzip = "gzip" in self.headers.get("accept-encoding", "")
        data = gzip.compress(BODY) if wants_gzip else BODY
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if wants_gzip:
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(data)))
        self.send_header("keep-alive", "timeout=5")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def relay(upstream: str) -> TestClient:
    app = FastAPI()

    @app.get("/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        client = httpx.AsyncClient()
        headers = http_proxy.request_headers(request.headers.items(), request.cookies)
        answer = await client.send(client.build_request("GET", f"{upstream}/{path}",
                                                        headers=headers), stream=True)
        return http_proxy.streamed(answer, on_done=None)

    return TestClient(app)


def test_a_compressed_answer_keeps_its_content_encoding(upstream: str) -> None:
    with relay(upstream) as client, client.stream(
            "GET", "/api/status", headers={"accept-encoding": "gzip"}) as answer:
        raw = b"".join(answer.iter_raw())
        assert answer.headers["content-encoding"] == "gzip"
        assert "keep-alive" not in answer.headers
    assert raw != BODY and gzip.decompress(raw) == BODY  # relayed compressed, as sent
    with relay(upstream) as client:
        decoded = client.get("/api/status", headers={"accept-encoding": "gzip"})
        assert decoded.content == BODY  # what a browser shows
        plain = client.get("/api/status", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == BODY
