"""`durable inspect` on DAG runs: a nodes table (and a "nodes" list in --json) in wave order."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.cli.conftest import ROOT, Cli, make_cli

HANDLERS = "examples.dag_handlers"
NODE_KEYS = {
    "id", "handler", "dependencies", "wave", "status", "attempts", "started_at", "finished_at",
    "duration", "items", "output", "output_omitted", "error", "reason",
}


@pytest.fixture
def cli(tmp_path) -> Cli:
    return make_cli(tmp_path / "world.db")


def run_dag(cli: Cli, spec: str, *args: str, ok: bool | None = True) -> str:
    proc = cli("dag", "run", spec, "-m", HANDLERS, "--wait", *args, ok=ok)
    return proc.stdout.splitlines()[0].strip()


def nodes_by_id(doc) -> dict:
    return {n["id"]: n for n in doc["nodes"]}


def write_spec(tmp_path, spec: dict) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_fan_out_nodes_complete_in_wave_order(cli):
    run_id = run_dag(cli, "examples/dag_fanout.yaml", "--input", '"go"')
    doc = cli.json("inspect", run_id)
    assert [n["id"] for n in doc["nodes"]] == ["A", "B1", "B2", "B3", "C"]
    assert [n["wave"] for n in doc["nodes"]] == [1, 2, 2, 2, 3]
    for node in doc["nodes"]:
        assert set(node) == NODE_KEYS
        assert node["handler"] == "task"
        assert node["status"] == "completed"
        assert node["attempts"] == 1
        assert node["error"] is None
        assert node["started_at"] and node["finished_at"]
        assert node["duration"] >= 0
    nodes = nodes_by_id(doc)
    # A node began when its last dependency finished, not when the run did.
    for later, before in [("B1", "A"), ("B2", "A"), ("C", "B1"), ("C", "B2"), ("C", "B3")]:
        assert nodes[later]["started_at"] >= nodes[before]["finished_at"], (later, before)
    nodes = nodes_by_id(doc)
    assert nodes["C"]["dependencies"] == ["B1", "B2", "B3"]
    assert nodes["A"]["output"] == {"task": "A", "received": "go"}
    assert nodes["C"]["output"]["task"] == "C"
    # The generic view is still there.
    assert len(doc["operations"]) == 5

    table = cli("inspect", run_id).stdout
    assert "nodes" in table and "HANDLER" in table
    rows = [line.split() for line in table.splitlines() if line.split()[1:2] in (
        ["A"], ["B1"], ["B2"], ["B3"], ["C"])]
    assert [r[1] for r in rows] == ["A", "B1", "B2", "B3", "C"]
    assert all(r[2] == "task" and r[3] == "completed" for r in rows)
    assert table.index("HANDLER") < table.index("OPERATION")


def test_failed_continue_and_skipped_nodes(cli, tmp_path):
    spec = write_spec(tmp_path, {"nodes": [
        {"id": "A", "handler": "task", "config": {"name": "A"}},
        {"id": "B", "handler": "python", "dependencies": ["A"], "on_failure": "continue",
         "retry": {"max_attempts": 2, "initial_delay": 0},
         "config": {"function": "fractions:Fraction", "numerator": 1, "denominator": 0}},
        {"id": "S", "handler": "task", "dependencies": ["A"], "when": "{{ input.flag }}",
         "config": {"name": "S"}},
        {"id": "F", "handler": "task", "dependencies": ["A"], "foreach": "{{ input.items }}",
         "config": {"name": "{{ item }}"}},
        {"id": "O", "handler": "output", "dependencies": ["A"], "config": {"value": 7}},
        {"id": "C", "handler": "task", "dependencies": ["B"], "config": {"name": "C"}},
        {"id": "D", "handler": "task", "dependencies": ["B", "S"], "trigger": "all_done",
         "config": {"name": "D"}},
        {"id": "W", "handler": "workflow", "on_failure": "continue",
         "config": {"name": "{{ input.flow }}"}},
    ]})
    run_id = run_dag(cli, spec, "--input",
                     '{"flag": false, "items": ["x", "y", "z"], "flow": "no_such_workflow"}')
    doc = cli.json("inspect", run_id)
    assert doc["run"]["status"] == "completed"
    assert [n["id"] for n in doc["nodes"]] == ["A", "W", "B", "F", "O", "S", "C", "D"]
    # An inline node's failure leaves no step events; its error is recorded for inspect.
    unknown = nodes_by_id(doc)["W"]
    assert unknown["status"] == "failed" and unknown["error"]["type"] == "UnknownWorkflow"
    assert "no_such_workflow" in unknown["error"]["message"]
    nodes = nodes_by_id(doc)
    assert nodes["B"]["status"] == "failed"
    assert nodes["B"]["attempts"] == 2
    assert nodes["B"]["error"]["type"] == "ZeroDivisionError"
    assert nodes["S"]["status"] == "skipped"
    assert nodes["S"]["reason"] == "when was false"
    assert nodes["S"]["attempts"] is None and nodes["S"]["started_at"] is None
    assert nodes["C"]["status"] == "skipped"
    assert nodes["C"]["reason"] == "dependency 'B' failed"
    assert nodes["D"]["status"] == "completed"
    assert nodes["F"]["status"] == "completed"
    assert nodes["F"]["items"] == 3 and nodes["F"]["attempts"] == 1  # each element: one
    assert [r["task"] for r in nodes["F"]["output"]] == ["x", "y", "z"]
    # The inline output handler records nothing; its output is rendered from the log.
    assert nodes["O"]["status"] == "completed" and nodes["O"]["output"] == 7

    table = cli("inspect", run_id).stdout
    assert "ZeroDivisionError" in table
    assert "3 items" in table
    assert "dependency 'B' failed" in table
    statuses = {line.split()[1]: line.split()[3] for line in table.splitlines()
                if line.split()[1:2] and line.split()[1] in nodes and line.split()[0].isdigit()}
    assert statuses == {"A": "completed", "W": "failed", "B": "failed", "F": "completed",
                        "O": "completed", "S": "skipped", "C": "skipped", "D": "completed"}


def test_a_node_failing_the_run_and_the_nodes_after_it(cli, tmp_path):
    spec = write_spec(tmp_path, {"nodes": [
        {"id": "A", "handler": "task", "config": {"name": "A"},
         "compensate": {"handler": "task", "config": {"name": "undo A"}}},
        {"id": "B", "handler": "python", "dependencies": ["A"], "retry": {"max_attempts": 1},
         "on_failure": "compensate",
         "config": {"function": "fractions:Fraction", "numerator": 1, "denominator": 0}},
        {"id": "C", "handler": "task", "dependencies": ["B"], "config": {"name": "C"}},
        {"id": "D", "handler": "task", "dependencies": ["C"], "trigger": "all_done",
         "config": {"name": "D"}},
    ]})
    run_id = run_dag(cli, spec, ok=False)
    doc = cli.json("inspect", run_id)
    assert doc["run"]["status"] == "failed"
    # The undo step is recorded after all the nodes, outside every node.
    assert [op["op_id"] for op in doc["operations"]][-1] == "2"
    nodes = nodes_by_id(doc)
    assert nodes["A"]["status"] == "completed"
    assert nodes["B"]["status"] == "failed"
    assert nodes["B"]["error"]["type"] == "ZeroDivisionError"
    assert nodes["C"]["status"] == "skipped"
    assert nodes["C"]["reason"] == "dependency 'B' failed the run"
    assert nodes["D"]["status"] == "skipped"
    assert nodes["D"]["reason"] == "node 'B' upstream failed the run"


def test_a_waiting_hook_node_and_the_nodes_after_it(cli, tmp_path):
    token = f"approve-{time.time_ns()}"
    spec = write_spec(tmp_path, {"nodes": [
        {"id": "A", "handler": "task", "config": {"name": "A"}},
        {"id": "H", "handler": "hook", "dependencies": ["A"], "config": {"token": token}},
        {"id": "E", "handler": "task", "dependencies": ["H"],
         "config": {"name": "E", "received": "{{ H.output }}"}},
    ]})
    run_id = run_dag(cli, spec, "--timeout", "1", ok=False)
    doc = cli.json("inspect", run_id)
    assert doc["run"]["status"] == "suspended"
    nodes = nodes_by_id(doc)
    assert nodes["A"]["status"] == "completed"
    assert nodes["H"]["status"] == "waiting"
    assert nodes["H"]["finished_at"] is None and nodes["H"]["duration"] is None
    assert nodes["E"]["status"] == "not started"
    table = cli("inspect", run_id).stdout
    assert "waiting" in table and "not started" in table

    cli("resume", token, '{"ok": true}')
    doc = _completed_by_a_worker(cli, run_id)
    nodes = nodes_by_id(doc)
    assert [nodes[n]["status"] for n in ("A", "H", "E")] == ["completed"] * 3
    assert nodes["H"]["output"] == {"ok": True}
    assert nodes["E"]["output"]["received"] == {"ok": True}


def test_a_large_output_is_left_out_of_the_json(cli, tmp_path):
    spec = write_spec(tmp_path, {"nodes": [
        {"id": "big", "handler": "task", "config": {"name": "big", "received": "{{ input }}"}},
    ]})
    run_id = run_dag(cli, spec, "--input", json.dumps("x" * 5000))
    node = cli.json("inspect", run_id)["nodes"][0]
    assert node["status"] == "completed"
    assert node["output"] is None and node["output_omitted"] is True


def test_a_non_dag_run_has_no_nodes(cli):
    run_id = cli("start", "tests.cli.cli_workload:greet", '["Ada"]', "--wait").stdout.split()[0]
    doc = cli.json("inspect", run_id)
    assert "nodes" not in doc
    assert doc["operations"]
    assert "HANDLER" not in cli("inspect", run_id).stdout


def test_operations_start_when_their_nodes_dependencies_finished(cli):
    run_id = run_dag(cli, "examples/dag_fanout.yaml", "--input", '"go"')
    doc = cli.json("inspect", run_id)
    ops = {op["op_id"]: op for op in doc["operations"]}
    nodes = nodes_by_id(doc)
    # Nodes in wave order: A 1.0., B1-B3 1.1.-1.3., C 1.4.; each one's step is <prefix>1.
    assert ops["1.4.1"]["started_at"] >= max(ops[f"1.{i}.1"]["finished_at"] for i in (1, 2, 3))
    for i in (1, 2, 3):
        assert ops[f"1.{i}.1"]["started_at"] >= ops["1.0.1"]["finished_at"]
    for index, node in enumerate(["A", "B1", "B2", "B3", "C"]):  # the tables agree
        assert ops[f"1.{index}.1"]["started_at"] == nodes[node]["started_at"]
        assert ops[f"1.{index}.1"]["duration_seconds"] == pytest.approx(nodes[node]["duration"])


def test_a_dag_run_no_worker_has_started_shows_its_input_and_nodes_not_started(cli):
    from durable.world import RunUpdate
    from worlds.sqlite import SqliteWorld

    proc = cli("dag", "run", "examples/dag_fanout.yaml", "-m", HANDLERS, "--input", '"go"')
    run_id = proc.stdout.split()[0]
    with SqliteWorld(cli.url) as world:  # what a worker without the handlers leaves behind
        assert world.acquire(run_id, "me", 60) is not None
        world.append(run_id, "me", [], RunUpdate("suspended", wake_at=world.now() + 10,
                                                   release=True))
    doc = cli.json("inspect", run_id)
    assert doc["run"]["status"] == "suspended"
    assert {n["status"] for n in doc["nodes"]} == {"not started"}
    assert {n["reason"] for n in doc["nodes"]} == {None}
    table = cli("inspect", run_id).stdout
    assert "skipped" not in table and "unknown" not in table
    lines = {line.split()[0]: line.split(None, 1)[1] for line in table.splitlines()[:8]
             if line.strip()}
    assert lines["input"] == '"go"'
    assert lines["spec"] == "fanout (5 nodes)"


def test_a_received_hook_node_is_completed_in_both_tables(cli, tmp_path):
    token = f"ok-{time.time_ns()}"
    spec = write_spec(tmp_path, {"nodes": [
        {"id": "H", "handler": "hook", "config": {"token": token}},
        {"id": "E", "handler": "task", "dependencies": ["H"], "config": {"name": "E"}},
    ]})
    run_id = run_dag(cli, spec, "--timeout", "1", ok=False)
    cli("resume", token, '{"ok": true}')
    doc = _completed_by_a_worker(cli, run_id)
    [hook] = [op for op in doc["operations"] if op["kind"] == "hook"]
    assert hook["status"] == nodes_by_id(doc)["H"]["status"] == "completed"
    assert "disposed" not in cli("inspect", run_id).stdout


def _completed_by_a_worker(cli, run_id: str) -> dict:
    """Run a DAG worker until the run completes; its `inspect --json` document then."""
    worker = subprocess.Popen(
        [cli.script, "worker", "durable.dag", HANDLERS, "--poll-interval", "0.05"],
        cwd=ROOT, env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            doc = cli.json("inspect", run_id)
            if doc["run"]["status"] == "completed":
                return doc
            assert time.monotonic() < deadline, doc["run"]
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=10)
