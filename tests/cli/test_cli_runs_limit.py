"""`durable runs` says when --limit left runs out, in the table and in --json."""

from __future__ import annotations

from durable.world import NewRun
from worlds.sqlite import SqliteWorld


def _pending_runs(cli, count: int) -> None:
    with SqliteWorld(cli.url) as world:
        for n in range(count):
            world.create_run(NewRun(f"r{n:02d}", "wf", b"{}"), owner=None, lease_ttl=60)


def test_runs_says_when_the_limit_left_runs_out(cli):
    _pending_runs(cli, 25)
    table = cli("runs").stdout.splitlines()
    assert len(table) == 1 + 20 + 1
    assert table[-1] == "20 of 25 runs shown; use --limit 25 to see them all"
    doc = cli.json("runs")
    assert (len(doc["runs"]), doc["truncated"], doc["total"]) == (20, True, 25)
    assert doc["runs"][0]["id"] == "r24" and doc["world"] == cli.url

    whole = cli.json("runs", "--limit", "25")
    assert (len(whole["runs"]), whole["truncated"], whole["total"]) == (25, False, 25)
    assert "shown" not in cli("runs", "--limit", "25").stdout
    assert cli.json("runs", "--status", "pending", "--limit", "3")["total"] == 25
    # Worlds count runs by status only: with --workflow the total is not known.
    by_workflow = cli.json("runs", "--workflow", "wf", "--limit", "5")
    assert (by_workflow["truncated"], by_workflow["total"]) == (True, None)
    assert cli("runs", "--workflow", "wf", "--limit", "5").stdout.splitlines()[-1] == (
        "the newest 5 runs shown; more match: use a higher --limit"
    )
