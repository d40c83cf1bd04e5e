"""The built-in ``http``, ``hook`` and ``workflow`` DAG handlers."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

import durable
import durable.dag as dag
from durable import HookNotFound, WorkflowFailed
from tests.local_http import serving

hits: Counter[str] = Counter()
_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with _lock:
            hits[self.path] += 1
            count = hits[self.path]
        if self.path == "/user":
            self._send(200, json.dumps({"id": 1, "name": "ada"}).encode(), "application/json")
        elif self.path == "/text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif self.path == "/flaky":
            if count == 1:
                self._send(500, b"boom", "text/plain")
            else:
                self._send(200, b'{"ok": true}', "application/json")
        else:
            self._send(404, b"no such thing", "text/plain")

    def do_POST(self) -> None:
        with _lock:
            hits[self.path] += 1
        length = int(self.headers.get("Content-Length", "0"))
        sent = json.loads(self.rfile.read(length))
        echo = {"method": "POST", "json": sent, "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type")}
        self._send(201, json.dumps(echo).encode(), "application/json")


@pytest.fixture
def server() -> Iterator[str]:
    hits.clear()
    with serving(_Handler) as url:
        yield url


def test_http_get_json_text_and_post(engine, server):
    spec = {"nodes": [
        {"id": "in", "handler": "input"},
        {"id": "user", "handler": "http", "dependencies": ["in"],
         "config": {"url": "{{ in.output.base }}/user"}},
        {"id": "text", "handler": "http", "dependencies": ["in"],
         "config": {"url": "{{ in.output.base }}/text", "timeout": 5}},
        {"id": "post", "handler": "http", "dependencies": ["user"],
         "config": {"method": "post", "url": "{{ input.base }}/echo",
                    "headers": {"Authorization": "Bearer t"},
                    "json": {"name": "{{ user.output.body.name }}"}}},
    ]}
    run = dag.start(spec, {"base": server})
    result = run.result(timeout=20)
    assert result["text"]["status"] == 200 and result["text"]["body"] == "plain words"
    assert result["text"]["headers"]["X-Test"] == "yes"
    assert result["post"]["status"] == 201
    assert result["post"]["body"] == {"method": "POST", "json": {"name": "ada"},
                                      "auth": "Bearer t", "type": "application/json"}
    assert hits["/user"] == 1 and hits["/echo"] == 1  # recorded steps are not re-requested
    names = sorted(e.name for e in run.events() if e.kind == "step_completed")
    assert names == ["http", "http", "http"]


def test_http_5xx_is_retried_per_the_node_retry_policy(engine, server):
    spec = {"nodes": [
        {"id": "get", "handler": "http", "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"url": f"{server}/flaky"}},
    ], "output": "{{ get.output.body }}"}
    assert dag.run(spec) == {"ok": True}
    assert hits["/flaky"] == 2


def test_http_404_fails_the_node_without_retrying(engine, server):
    spec = {"nodes": [
        {"id": "missing", "handler": "http", "retry": {"max_attempts": 3, "initial_delay": 0},
         "config": {"url": f"{server}/nope"}},
        {"id": "after", "handler": "output", "dependencies": ["missing"],
         "config": {"value": "{{ missing.output }}"}},
    ]}
    with pytest.raises(WorkflowFailed, match=r"node 'missing' \(handler 'http'\) failed: "
                       r"HttpStatusError: HTTP 404 from GET .*/nope: no such thing"):
        dag.start(spec).result(timeout=20)
    assert hits["/nope"] == 1
    spec["nodes"][0]["on_failure"] = "continue"
    spec["nodes"][1]["trigger"] = "all_done"
    assert dag.run(spec) == {"after": None}


def test_missing_required_config_is_a_validation_error_naming_the_node():
    spec = {"nodes": [
        {"id": "get", "handler": "http", "config": {"method": "GET"}},
        {"id": "wait", "handler": "hook", "config": {"timeout": "1h"}},
        {"id": "child", "handler": "workflow", "config": {"args": []}},
        {"id": "ok", "handler": "http", "config": {"url": "{{ input.url }}"}},
    ]}
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    text = str(caught.value)
    assert "get" in text and "handler 'http' needs config 'url'" in text
    assert "wait" in text and "handler 'hook' needs config 'token'" in text
    assert "child" in text and "handler 'workflow' needs config 'name'" in text
    assert "'ok'" not in text


HOOK_SPEC = {"nodes": [
    {"id": "in", "handler": "input"},
    {"id": "approval", "handler": "hook", "dependencies": ["in"],
     "config": {"token": "approve:{{ input.id }}", "timeout": "1 day"}},
    {"id": "out", "handler": "output", "dependencies": ["approval"],
     "config": {"approved": "{{ approval.output.ok }}", "by": "{{ approval.output.by }}"}},
]}


def _resume(token: str, payload: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            durable.resume_hook(token, payload)
            return
        except HookNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_hook_waits_for_resume_hook_and_feeds_dependants(engine):
    run = dag.start(HOOK_SPEC, {"id": 42})
    _resume("approve:42", {"ok": True, "by": "ada"})
    assert run.result(timeout=20) == {"out": {"approved": True, "by": "ada"}}
    kinds = [e.kind for e in run.events()]
    assert "hook_created" in kinds and not any(e.kind == "step_completed" for e in
                                               run.events())
    with pytest.raises(HookNotFound):
        durable.resume_hook("approve:42", {"ok": False})


def test_hook_timeout_fails_the_node_or_continues(engine):
    run = dag.start(HOOK_SPEC, {"id": 7})
    with pytest.raises(WorkflowFailed, match=r"node 'approval' \(handler 'hook'\) failed: "
                       r"HookTimeout"):
        run.result(timeout=20)
    spec = json.loads(json.dumps(HOOK_SPEC))
    spec["nodes"][1]["on_failure"] = "continue"
    spec["nodes"][2].update(trigger="all_done", config={"value": "{{ approval.output }}"})
    assert dag.start(spec, {"id": 8}).result(timeout=20) == {"out": None}


@durable.workflow(name="tests.dag.double_sum")
def double_sum(a: int, b: int = 0, *, scale: int = 2) -> dict[str, int]:
    return {"total": (a + b) * scale}


def test_workflow_handler_runs_a_registered_workflow_as_a_child(engine):
    spec = {"nodes": [
        {"id": "in", "handler": "input"},
        {"id": "child", "handler": "workflow", "dependencies": ["in"],
         "config": {"name": "tests.dag.double_sum", "args": ["{{ input.a }}", 4],
                    "kwargs": {"scale": 10}}},
        {"id": "out", "handler": "output", "dependencies": ["child"],
         "config": {"value": "{{ child.output.total }}"}},
    ]}
    run = dag.start(spec, {"a": 1})
    assert run.result(timeout=20) == {"out": 50}
    assert not any(e.kind == "step_completed" for e in run.events())
    spec["nodes"][1]["config"]["name"] = "tests.dag.no_such_workflow"
    with pytest.raises(dag.DagValidationError, match="no workflow named 'tests.dag.no_such_wo"):
        dag.start(spec, {"a": 1})
    spec["nodes"][1]["config"]["name"] = "{{ input.flow }}"  # known only once the run reads it
    with pytest.raises(WorkflowFailed, match=r"node 'child' \(handler 'workflow'\) failed: "
                       r"UnknownWorkflow"):
        dag.start(spec, {"a": 1, "flow": "tests.dag.no_such_workflow"}).result(timeout=20)
