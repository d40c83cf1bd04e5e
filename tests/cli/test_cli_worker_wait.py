"""What `durable inspect` says of a run that only a worker can move on.

After a deploy renamed a workflow, its runs wait for a worker that has the old name: the CLI
cannot see which workflows the live workers have, so past a worker's usual delay it names the
workflow the run needs.
"""

from __future__ import annotations

import json
import time

from cli._waits import WORKER_GRACE, worker_wait
from durable.world import NewEvent, NewRun, RunUpdate
from tests.cli.conftest import Cli
from worlds.memory import MemoryWorld
from worlds.sqlite import SqliteWorld

INPUT = b'{"args":[],"kwargs":{}}'


def _world(cli: Cli, at: float) -> SqliteWorld:
    return SqliteWorld(cli.url, clock=lambda: at)


def _pending(cli: Cli, run_id: str, name: str, at: float) -> None:
    world = _world(cli, at)
    try:
        world.create_run(NewRun(run_id, name, INPUT), owner=None, lease_ttl=5)
    finally:
        world.close()


def _due(cli: Cli, run_id: str, name: str, at: float, *, slept: bool = False) -> None:
    """A run suspended at ``at`` and due a second later; ``slept``: by a sleep in its log."""
    world = _world(cli, at)
    wake_at = at + 1
    events = [NewEvent("sleep_started", "1", "sleep", json.dumps({"wake_at": wake_at}).encode())]
    try:
        world.create_run(NewRun(run_id, name, INPUT), owner="w", lease_ttl=5)
        world.append(
            run_id, "w", events if slept else [],
            RunUpdate("suspended", wake_at=wake_at, release=True),
        )
    finally:
        world.close()


def test_a_run_left_waiting_names_the_workflow_a_worker_must_have(cli: Cli) -> None:
    long_ago = time.time() - 120
    _pending(cli, "renamed-1", "deploy_wait.renamed", long_ago)
    _due(cli, "renamed-2", "deploy_wait.renamed", long_ago)
    pending = cli("inspect", "renamed-1").stdout
    assert (
        "waiting   for a worker that has workflow 'deploy_wait.renamed' registered "
        "(pending for 2 m" in pending
    ), pending
    due = cli("inspect", "renamed-2").stdout
    named = "waiting   for a worker that has workflow 'deploy_wait.renamed' registered"
    # Due 119 s ago when made: "1 m 59 s", or "2 m 00 s" on a slow machine.
    assert f"{named} (due 1 m" in due or f"{named} (due 2 m" in due, due


def test_a_run_just_started_waits_for_a_worker(cli: Cli) -> None:
    _pending(cli, "fresh-1", "deploy_wait.fresh", time.time())
    fresh = cli("inspect", "fresh-1").stdout
    assert "waiting   for a worker (pending for" in fresh and "registered" not in fresh, fresh


def test_worker_wait_only_for_runs_a_worker_must_take() -> None:
    world = MemoryWorld("memory://", clock=lambda: 1000.0)
    try:
        world.create_run(NewRun("asleep", "deploy_wait.asleep", INPUT), owner="w", lease_ttl=5)
        world.append("asleep", "w", [], RunUpdate("suspended", wake_at=2000.0, release=True))
        record = world.get_run("asleep")
        assert record is not None
        assert worker_wait(record, 1500.0) is None  # it sleeps: nothing to ask of a worker
        due = worker_wait(record, 2000.0 + WORKER_GRACE)
        named = "waiting for a worker that has workflow 'deploy_wait.asleep' registered"
        assert due == (named, 2000.0)
        assert worker_wait(record, 2001.0) == ("waiting for a worker", 2000.0)
    finally:
        world.close()


def test_durable_runs_names_the_workflow_too(cli: Cli) -> None:
    long_ago = time.time() - 120
    _pending(cli, "renamed-3", "deploy_wait.listed", long_ago)
    _due(cli, "renamed-4", "deploy_wait.listed", long_ago)
    _pending(cli, "fresh-2", "deploy_wait.listed_fresh", time.time())
    listed = cli("runs").stdout
    assert listed.count("that has workflow 'deploy_wait.listed' registered") == 2, listed
    assert "deploy_wait.listed_fresh' registered" not in listed, listed


def test_a_sleep_whose_time_came_without_a_worker_is_due_not_completed(cli: Cli) -> None:
    _due(cli, "napped-1", "deploy_wait.napper", time.time() - 120, slept=True)
    ops = cli.json("inspect", "napped-1")["operations"]
    assert [(op["kind"], op["status"]) for op in ops] == [("sleep", "due")], ops
    assert " due " in cli("inspect", "napped-1").stdout
