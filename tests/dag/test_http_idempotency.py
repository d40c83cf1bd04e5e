"""The built-in ``http`` handler: idempotency keys, URLs that cannot be sent, query ``params``."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

import durable.dag as dag
from durable import WorkflowFailed
from tests.local_http import serving

seen: list[dict[str, object]] = []
"""Every request the server got: method, path and the Idempotency-Key headers (any case)."""
_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        if length:
            self.rfile.read(length)
        keys = [v for k, v in self.headers.items() if k.lower() == "idempotency-key"]
        with _lock:
            seen.append({"method": self.command, "path": self.path, "keys": keys})
            attempts = sum(1 for s in seen if s["path"] == self.path)
        # /flaky fails its first request, as a server that crashed after acting would.
        status = 500 if self.path.startswith("/flaky") and attempts == 1 else 200
        body = json.dumps({"path": self.path, "keys": keys}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture
def server() -> Iterator[str]:
    seen.clear()
    with serving(_Handler) as url:
        yield url


def failure(run) -> WorkflowFailed:
    with pytest.raises(WorkflowFailed) as caught:
        run.result(timeout=20)
    return caught.value


# -- Idempotency-Key ---------------------------------------------------------------------------


def test_every_attempt_of_a_node_sends_the_steps_idempotency_key(engine, server):
    spec = {"nodes": [
        {"id": "charge", "handler": "http", "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"method": "POST", "url": "{{ input.base }}/flaky/charge",
                    "json": {"amount": 5}}},
        {"id": "look", "handler": "http", "config": {"url": "{{ input.base }}/look"}},
    ]}
    run = dag.start(spec, {"base": server})
    run.result(timeout=20)
    ops = {e.op_id for e in run.events() if e.kind == "step_completed"}
    charges = [s for s in seen if s["path"] == "/flaky/charge"]
    assert [c["method"] for c in charges] == ["POST", "POST"]  # a 500, then a retry
    [key] = charges[0]["keys"]
    assert charges[1]["keys"] == [key]  # the retried POST is recognisable as the same one
    run_id, _, op = str(key).partition(":")
    assert run_id == run.id and op in ops
    [look] = [s for s in seen if s["path"] == "/look"]
    [other] = look["keys"]
    assert other != key and str(other).startswith(f"{run.id}:")


def test_each_foreach_element_has_a_key_of_its_own(engine, server):
    spec = {"nodes": [
        {"id": "each", "handler": "http", "foreach": "{{ input.ids }}",
         "config": {"method": "POST", "url": f"{server}/item/{{{{ item }}}}"}},
    ]}
    dag.run(spec, {"ids": [1, 2, 3]})
    keys = [k for s in seen for k in s["keys"]]  # type: ignore[attr-defined]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_a_key_the_node_sets_itself_is_sent_instead(engine, server):
    spec = {"nodes": [
        {"id": "charge", "handler": "http",
         "config": {"method": "POST", "url": f"{server}/charge",
                    "headers": {"idempotency-key": "order-{{ input.order }}"}}},
    ]}
    dag.run(spec, {"order": 42})
    assert [s["keys"] for s in seen] == [["order-42"]]


# -- URLs that cannot be sent ------------------------------------------------------------------

BAD_URLS = [
    ("/find?q=two words", r"contains ' ' \(spaces and control characters must be percent-encoded"),
    ("/find?q=line\nbreak", r"contains '\\n'"),
    ("/caf\u00e9", r"contains the non-ASCII character 'é'"),
]


@pytest.mark.parametrize(("tail", "why"), BAD_URLS, ids=["space", "newline", "non-ascii"])
def test_a_url_that_cannot_be_sent_fails_at_once_naming_the_problem(engine, server, tail, why):
    spec = {"nodes": [
        {"id": "find", "handler": "http", "on_failure": "continue",
         "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"url": "{{ input.base }}{{ input.tail }}"}},
    ]}
    run = dag.start(spec, {"base": server, "tail": tail})
    error = failure(run)
    # A spec/data mismatch: not retried, and not passed off as a failure to continue after.
    assert error.error_type == "durable.dag.DagNodeFailed"
    message = str(error)
    assert "node 'find' (handler 'http'): http handler: cannot send to url" in message
    assert repr(server + tail) in message
    assert re.search(why, message), message
    kinds = [e.kind for e in run.events()]
    assert "step_retrying" not in kinds and kinds.count("step_failed") == 1
    assert seen == []


@pytest.mark.parametrize(("url", "why"), [
    ("localhost:8080/x", "it is not an http:// or https:// URL"),
    ("htp://example.com/x", "it is not an http:// or https:// URL"),
    ("file:///etc/passwd", "it is not an http:// or https:// URL"),
    ("http:///x", "it has no host"),
    ("http://example.com:eighty/x", "Port could not be cast to integer value"),
])
def test_a_url_that_is_not_http_fails_at_once(engine, url, why):
    spec = {"nodes": [
        {"id": "get", "handler": "http", "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"url": "{{ input }}"}},
    ]}
    run = dag.start(spec, url)
    error = failure(run)
    assert f"http handler: cannot send to url {url!r}: {why}" in str(error)
    assert "step_retrying" not in [e.kind for e in run.events()]


# -- params ------------------------------------------------------------------------------------


def test_params_are_urlencoded_onto_the_url(engine, server):
    spec = {"nodes": [
        {"id": "find", "handler": "http",
         "config": {"url": f"{server}/find",
                    "params": {"q": "{{ input.q }}", "page": 2, "tag": ["a b", "c&d"],
                               "exact": True, "cursor": None}}},
        {"id": "more", "handler": "http",
         "config": {"url": f"{server}/find?sort=new#top", "params": {"q": "{{ input.q }}"}}},
    ], "output": {"find": "{{ find.output.body.path }}", "more": "{{ more.output.body.path }}"}}
    dag.validate(spec)  # a key of the built-in handler, not a typo
    assert dag.run(spec, {"q": "café & crème"}) == {
        "find": "/find?q=caf%C3%A9+%26+cr%C3%A8me&page=2&tag=a+b&tag=c%26d&exact=true",
        "more": "/find?sort=new&q=caf%C3%A9+%26+cr%C3%A8me",
    }


def test_params_that_are_not_query_values_fail_at_once(engine, server):
    spec = {"nodes": [
        {"id": "find", "handler": "http", "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"url": f"{server}/find", "params": {"filter": {"a": 1}}}},
    ]}
    error = failure(dag.start(spec, {}))
    assert "query parameter 'filter' must be a string, number, boolean, null or a list" in str(
        error
    )
    assert seen == []
