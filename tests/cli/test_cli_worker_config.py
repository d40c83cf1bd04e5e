"""`durable worker` and `durable dev` execute runs whatever the modules they import configured.

The module under test calls ``durable.configure(APP_WORLD or None, worker=False)`` as it is
imported, as the module of an API in front of workers does.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tests.cli.background import Running, wait_for_status
from tests.cli.conftest import Cli

MODULE = "tests.cli.api_workload"


def _module_world_only(cli: Cli) -> Cli:
    """The CLI's environment with no DURABLE_WORLD: the module names the world (APP_WORLD)."""
    env = {k: v for k, v in cli.env.items() if k != "DURABLE_WORLD"}
    return replace(cli, env={**env, "APP_WORLD": cli.url})


def test_worker_executes_runs_of_a_module_that_turned_its_worker_off_on_its_world(cli: Cli):
    with Running(_module_world_only(cli), "worker", MODULE, "--poll-interval", "0.05") as worker:
        worker.wait_for(f"on {cli.url}: doubled")
        run_id = cli("start", f"{MODULE}:doubled", "[21]").stdout.split()[0]
        wait_for_status(cli, run_id, "completed", timeout=15)
        worker.interrupt()
        code, _, _ = worker.finish(timeout=15)
    assert code == 0
    assert cli.json("inspect", run_id)["run"]["result"] == 42


def test_dev_executes_runs_of_a_module_that_turned_its_worker_off_on_its_world(cli: Cli):
    with Running(_module_world_only(cli), "dev", MODULE, "--plain", merged=True) as dev:
        dev.wait_for(f"worker on {cli.url}")
        dev.wait_for("waiting for runs")
        run_id = cli("start", f"{MODULE}:doubled", "[4]").stdout.split()[0]
        dev.wait_for(f"{run_id}  ■ completed", timeout=15)
        dev.interrupt()
        code, _, _ = dev.finish(timeout=15)
    assert code == 0


def test_the_world_given_to_a_worker_wins_over_the_one_its_module_chose(
    cli: Cli, tmp_path: Path
):
    app = replace(cli, env={**cli.env, "APP_WORLD": f"sqlite:///{tmp_path / 'app.db'}"})
    with Running(app, "worker", MODULE, "--poll-interval", "0.05") as worker:
        worker.wait_for(f"on {cli.url}: doubled")
        run_id = cli("start", f"{MODULE}:doubled", "[1]").stdout.split()[0]
        wait_for_status(cli, run_id, "completed", timeout=15)


def test_the_cli_registers_no_workflow_of_its_own():
    # A worker takes up the workflows registered once its modules are imported: had the CLI
    # imported durable.dag itself, every worker would claim DAG runs it has no handlers for,
    # put each back for 10 s, and win it again over the worker that has them.
    code = ("import cli._main\nfrom durable._decorators import registered_workflows\n"
            "print(sorted(registered_workflows()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=True)
    assert proc.stdout.strip() == "[]"
