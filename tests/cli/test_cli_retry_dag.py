"""`durable retry --failed --workflow NAME` finds DAG runs by their spec's name, as `runs` does."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import WORKLOAD


def _failing_spec(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "nodes": [
        {"id": "div", "handler": "divide", "config": {"a": 1, "b": 0},
         "retry": {"max_attempts": 1}},
    ]}))
    return str(path)


def test_retry_failed_runs_of_a_dag_spec_by_its_name(cli, tmp_path):
    zerodiv, other = _failing_spec(tmp_path, "zerodiv"), _failing_spec(tmp_path, "other")

    def failed_dag_run(spec: str) -> str:
        proc = cli("dag", "run", spec, "-m", "examples.dag_handlers", "--wait", ok=False)
        return proc.stdout.splitlines()[0].strip()

    mine = [failed_dag_run(zerodiv) for _ in range(2)]
    theirs = failed_dag_run(other)
    doomed = cli("start", f"{WORKLOAD}:doomed", '["no"]', "--wait", ok=False).stdout.strip()
    listed = cli.json("runs", "--workflow", "zerodiv", "--status", "failed")["runs"]
    assert sorted(r["id"] for r in listed) == sorted(mine)

    out = cli("retry", "--failed", "--workflow", "zerodiv").stdout.splitlines()
    assert sorted(out) == sorted(
        f"retrying run {r}: pending for a worker of durable.dag" for r in mine
    )
    status = {r["id"]: r["status"] for r in cli.json("runs", "--limit", "10")["runs"]}
    assert status == {mine[0]: "pending", mine[1]: "pending", theirs: "failed", doomed: "failed"}

    doc = cli.json("retry", "--failed", "--workflow", "zerodiv")
    assert doc == {"retried": [], "refused": []}
    assert cli("retry", "--failed", "--workflow", "zerodiv").stdout.strip() == (
        "no failed runs of zerodiv to retry"
    )
    # The engine's own name still selects every DAG run, whatever its spec.
    assert cli.json("retry", "--failed", "--workflow", "durable.dag")["retried"] == [theirs]
