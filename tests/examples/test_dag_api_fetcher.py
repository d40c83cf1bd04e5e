"""examples/dag_api_fetcher.json against a local HTTP server (get_user and get_posts at once)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import durable.dag
from durable.testing import world

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dag_api_fetcher.json"
USERS = {1: {"id": 1, "name": "Leanne Graham"}}
POSTS = [
    {"userId": 1, "id": 1, "title": "first"},
    {"userId": 1, "id": 2, "title": "second"},
    {"userId": 2, "id": 3, "title": "not hers"},
]


class _Api(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        type(self).hits.append(url.path)
        body: object
        if url.path.startswith("/users/") and int(url.path.rsplit("/", 1)[1]) in USERS:
            body = USERS[int(url.path.rsplit("/", 1)[1])]
        elif url.path == "/posts":
            wanted = int(parse_qs(url.query)["userId"][0])
            body = [p for p in POSTS if p["userId"] == wanted]
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def api() -> Iterator[str]:
    _Api.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_api_fetcher_example(api: str):
    assert durable.dag.waves(durable.dag.validate(durable.dag.load_file(EXAMPLE))) == [
        ["input"], ["get_posts", "get_user"], ["output"]
    ]
    with world():
        result = durable.dag.run(EXAMPLE, {"base_url": api, "user_id": 1})
    assert result == {"user": USERS[1], "posts": POSTS[:2]}
    assert sorted(_Api.hits) == ["/posts", "/users/1"]


def test_api_fetcher_unknown_user_fails(api: str):
    with world(), pytest.raises(durable.WorkflowFailed, match="HTTP 404"):
        durable.dag.run(EXAMPLE, {"base_url": api, "user_id": 7})
