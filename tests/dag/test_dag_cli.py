"""`durable dag validate` and `durable dag run` in real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import durable.dag as dag
from durable.dag._spec import load_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dag_cli(tmp_path):
    script = shutil.which("durable") or str(Path(sys.executable).parent / "durable")
    if not Path(script).exists():
        pytest.skip("the `durable` console script is not installed (pip install -e .)")
    env = {**os.environ, "DURABLE_WORLD": f"sqlite:///{tmp_path}/cli.db"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, "dag", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    run.world = env["DURABLE_WORLD"]  # type: ignore[attr-defined]
    return run


def test_validate_a_valid_file(dag_cli):
    proc = dag_cli("validate", "examples/dag_math.json", "-m", "examples.dag_handlers")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "examples/dag_math.json: valid (5 nodes in 4 waves)"
    doc = json.loads(
        dag_cli("validate", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers",
                "--json").stdout
    )
    assert doc == {"valid": True, "nodes": 5, "waves": [["A"], ["B1", "B2", "B3"], ["C"]],
                   "advice": []}


def test_validate_an_invalid_file_prints_one_line_per_problem(dag_cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": [
        {"id": "a", "handler": "add", "dependencies": ["b"], "config": {"a": 1, "b": 2}},
        {"id": "b", "handler": "add", "dependencies": ["a"], "config": {"a": 1, "b": 2}},
        {"id": "c", "handler": "nope", "dependencies": ["ghost"]},
        {"id": "c", "handler": "add", "config": {"a": 1, "b": 2}},
    ]}))
    proc = dag_cli("validate", str(bad), "-m", "examples.dag_handlers")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert [line.split(": ", 1)[1].split(" (")[0] for line in lines] == [
        "node 'c': duplicate id",
        "node 'c': unknown handler 'nope'",
        "node 'c': unknown dependency 'ghost'",
        "node 'a': cycle: a -> b -> a",
    ]
    # A config the handler cannot take, a literal duration or workflow name that cannot work.
    bad.write_text(json.dumps({"nodes": [
        {"id": "a", "handler": "add", "config": {"a": 1, "c": 2}},
        {"id": "h", "handler": "hook", "config": {"token": "t", "timeout": "5 fortnights"}},
        {"id": "w", "handler": "workflow", "config": {"name": "purchase_aproval"}},
    ]}))
    proc = dag_cli("validate", str(bad), "-m", "examples.dag_handlers")
    assert proc.returncode == 1
    assert "node 'a': config does not fit handler 'add': missing a required argument: 'b' " \
        "(it takes: a, b)" in proc.stderr
    assert "node 'h': config 'timeout': invalid duration \"5 fortnights\"" in proc.stderr
    assert "node 'w': config 'name': no workflow named 'purchase_aproval' is registered" \
        in proc.stderr
    # Without the handler module every math handler is unknown.
    proc = dag_cli("validate", "examples/dag_math.json")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 5
    assert "unknown handler 'add'" in proc.stderr and "-m MODULE" in proc.stderr


def test_validate_an_unreadable_file(dag_cli, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{nodes")
    proc = dag_cli("validate", str(broken))
    assert proc.returncode != 0
    assert "invalid JSON" in proc.stderr


def test_invalid_yaml_is_one_line_saying_where(dag_cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nnodes:\n  - id: a\n    handler: [unclosed\n")
    proc = dag_cli("validate", str(broken))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert (
        "invalid YAML: line 5, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 4)"
    ) in proc.stderr


def test_yaml_reads_only_true_and_false_as_booleans(tmp_path):
    # YAML 1.1 reads `on`, `yes`, `no` as booleans: a property named `on` became True.
    spec = tmp_path / "switch.yaml"
    spec.write_text(
        "input:\n  type: object\n  required: [on]\n  properties:\n"
        "    on: {type: boolean, default: true}\n"
        "nodes:\n  - {id: a, handler: input, when: \"{{ input.on }}\", "
        "config: {on: yes, off: true}}\n"
    )
    data = load_file(spec)
    assert data["input"]["required"] == ["on"] and "on" in data["input"]["properties"]
    assert data["nodes"][0]["config"] == {"on": "yes", "off": True}
    assert dag.validate(data).nodes[0].when == "{{ input.on }}"


def test_run_wait_prints_the_id_and_result(dag_cli):
    proc = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers", "--wait")
    assert proc.returncode == 0, proc.stderr
    run_id, result = proc.stdout.splitlines()
    assert run_id.startswith("wrun_")
    assert json.loads(result) == pytest.approx(80 / 3)
    proc = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers", "--wait",
                   "--input", '"go"', "--json")
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed"
    assert doc["workflow"] == "durable.dag"
    assert doc["result"]["task"] == "C"


def test_runs_lists_dag_runs_by_their_spec_name(dag_cli):
    math = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers", "--wait")
    math_id = math.stdout.split()[0]
    fan = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers", "--wait",
                  "--input", '"go"')
    fan_id = fan.stdout.split()[0]
    script = shutil.which("durable") or str(Path(sys.executable).parent / "durable")
    env = {**os.environ, "DURABLE_WORLD": dag_cli.world}

    def runs(*args: str) -> str:
        proc = subprocess.run([script, "runs", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        return proc.stdout

    [row] = [line for line in runs().splitlines() if line.startswith(math_id)]
    assert "durable.dag: math" in row
    doc = json.loads(runs("--workflow", "math", "--json"))
    assert [(r["id"], r["workflow"], r["dag"]) for r in doc["runs"]] == [
        (math_id, "durable.dag", "math")
    ]
    both = {r["id"] for r in json.loads(runs("--workflow", "durable.dag", "--json"))["runs"]}
    assert both == {math_id, fan_id}


def test_run_wait_executes_only_its_own_run(dag_cli):
    # Another DAG run is waiting in the world for a worker: --wait must not become that worker.
    queued = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers")
    assert queued.returncode == 0, queued.stderr
    other = queued.stdout.strip()
    proc = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers", "--wait",
                   "--input", '"go"', "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    script = shutil.which("durable") or str(Path(sys.executable).parent / "durable")
    env = {**os.environ, "DURABLE_WORLD": dag_cli.world}
    shown = subprocess.run([script, "inspect", other, "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert json.loads(shown.stdout)["run"]["status"] == "pending", shown.stderr


def test_run_input_from_a_file(dag_cli, tmp_path):
    (tmp_path / "input.json").write_text('"go"')
    proc = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers", "--wait",
                   "--input", f"@{tmp_path / 'input.json'}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"]["task"] == "C"
    proc = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers",
                   "--input", f"@{tmp_path / 'missing.json'}")
    assert proc.returncode == 1 and "cannot read --input from" in proc.stderr, proc.stderr


def test_a_failed_run_names_its_error_by_its_public_name(dag_cli, tmp_path):
    spec = tmp_path / "missing.json"
    spec.write_text(json.dumps({"nodes": [
        {"id": "a", "handler": "output", "config": {"value": {"n": 1}}},
        {"id": "b", "handler": "output", "dependencies": ["a"],
         "config": {"value": "{{ a.output.m }}"}},
    ]}))
    proc = dag_cli("run", str(spec), "--wait")
    assert proc.returncode == 1
    shown = "failed: durable.dag.TemplateError: node 'b': '{{ a.output.m }}': a.output.m not found"
    assert shown in proc.stderr, proc.stderr


def test_run_without_wait_leaves_the_run_to_a_worker(dag_cli):
    proc = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("wrun_")
    assert "durable worker durable.dag examples.dag_handlers" in proc.stderr


def test_run_rejects_an_invalid_spec_or_input(dag_cli):
    proc = dag_cli("run", "examples/dag_math.json", "--wait")
    assert proc.returncode == 1 and "unknown handler 'add'" in proc.stderr
    proc = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers",
                   "--input", "{oops")
    assert proc.returncode != 0 and "--input is not valid JSON" in proc.stderr


def test_starting_an_existing_run_id_says_so_and_starts_nothing(dag_cli):
    first = dag_cli("run", "examples/dag_math.json", "-m", "examples.dag_handlers",
                    "--run-id", "fixed-1")
    assert "started DAG run fixed-1" in first.stderr
    again = dag_cli("run", "examples/dag_fanout.yaml", "-m", "examples.dag_handlers",
                    "--run-id", "fixed-1", "--json")
    assert "run fixed-1 already exists (pending)" in again.stderr
    assert "started DAG run" not in again.stderr
    shown = json.loads(again.stdout)
    assert shown["created"] is False and shown["workflow"] == "durable.dag"


def test_validate_notes_what_a_valid_spec_does_that_is_seldom_meant(dag_cli, tmp_path):
    spec = tmp_path / "notes.json"
    spec.write_text(json.dumps({"nodes": [
        {"id": "email", "handler": "add", "on_failure": "continue", "config": {"a": 1, "b": 2}},
        {"id": "verify", "handler": "hook", "dependencies": ["email"], "config": {"token": "t"}},
        {"id": "done", "handler": "add", "dependencies": ["verify"], "trigger": "all_done",
         "config": {"a": 1, "b": 2}},
    ]}))
    proc = dag_cli("validate", str(spec), "-m", "examples.dag_handlers")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stderr.strip().splitlines()
    assert notes == [
        f"{spec}: note: node 'verify': when 'email' fails (on_failure: continue), 'verify' and "
        "what follows it are skipped and the run still completes; give it trigger: all_done to "
        "run it anyway",
        f"{spec}: note: node 'verify': a hook with no timeout, in a spec with none: the run "
        "waits for ever if nobody answers (give the hook a timeout, or the spec one)",
    ]
    doc = json.loads(dag_cli("validate", str(spec), "-m", "examples.dag_handlers",
                             "--json").stdout)
    assert doc["valid"] is True and [a["node"] for a in doc["advice"]] == ["verify", "verify"]
