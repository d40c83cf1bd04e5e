"""`durable gc`: durations said one way, formats it takes explained, and --dry-run."""

from __future__ import annotations

import re

from durable.world import NewEvent, NewRun, RunUpdate
from worlds.sqlite import SqliteWorld


def _finished(world: SqliteWorld, run_id: str, parent: str | None = None) -> None:
    world.create_run(NewRun(run_id, "wf", b"{}", parent_id=parent), owner="me", lease_ttl=60)
    world.append(run_id, "me", [NewEvent("run_completed")], RunUpdate("completed", release=True))


def test_gc_dry_run_says_what_it_would_delete_and_deletes_nothing(cli):
    with SqliteWorld(cli.url) as world:
        _finished(world, "done-1")
        _finished(world, "done-2")
        world.create_run(NewRun("parent", "wf", b"{}"), owner="me", lease_ttl=60)
        _finished(world, "parent.1", parent="parent")  # kept while its parent runs
    dry = cli("gc", "--older-than", "0s", "--dry-run").stdout.splitlines()
    assert dry[0].startswith("would delete 2 finished runs older than 0s (last changed before ")
    assert dry[0].endswith("): 2 completed; nothing deleted (--dry-run)")
    assert [line.split() for line in dry[1:]] == [
        ["done-2", "wf", "completed"], ["done-1", "wf", "completed"]
    ]
    doc = cli.json("gc", "--older-than", "0s", "--dry-run")
    assert (doc["deleted"], doc["dry_run"]) == (0, True)
    assert [r["id"] for r in doc["would_delete"]] == ["done-2", "done-1"]
    assert len(cli.json("runs")["runs"]) == 4

    done = cli("gc", "--older-than", "0s").stdout
    assert done.startswith("deleted 2 finished runs older than 0s (last changed before ")
    assert sorted(r["id"] for r in cli.json("runs")["runs"]) == ["parent", "parent.1"]


def test_gc_says_durations_one_way_and_which_ones_it_takes(cli):
    cli("world", "info")
    for given, said in [("30d", "30d"), ("90", "1m30s"), ("1 hour, 30 minutes", "1h30m"),
                        ("10s", "10s"), ("2w", "14d")]:
        assert f"older than {said} (" in cli("gc", "--older-than", given).stdout
    bad = cli("gc", "--older-than", "banana", ok=False)
    assert bad.stderr == (
        'Error: --older-than: invalid duration "banana": use a number and a unit, such as 30d, '
        '12h, 90m, 1h30m or "7 days" (units: ms, s, m, h, d, w), or a number of seconds\n'
    )
    assert "--dry-run" in cli("gc", "--help").stdout


def test_gc_compact_gives_the_space_of_deleted_runs_back(cli, tmp_path):
    payload = b'{"args":["' + b"x" * 50_000 + b'"],"kwargs":{}}'
    with SqliteWorld(cli.url) as world:
        for i in range(200):
            world.create_run(NewRun(f"big-{i}", "wf", payload), owner="me", lease_ttl=60)
            world.append(
                f"big-{i}", "me", [NewEvent("run_completed")], RunUpdate("completed", release=True)
            )
        world.create_run(NewRun("kept", "wf", payload), owner=None, lease_ttl=60)
    database = tmp_path / "world.db"
    assert str(database) in cli.url
    plain = cli.json("gc", "--older-than", "0s")
    assert plain["deleted"] == 200 and "bytes_after" not in plain
    grown = database.stat().st_size
    assert grown > 5_000_000  # deleting frees pages inside the file, which keeps its size

    doc = cli.json("gc", "--older-than", "0s", "--compact")
    assert doc["deleted"] == 0
    assert doc["bytes_before"] >= grown and doc["bytes_after"] < 1_000_000, doc
    assert database.stat().st_size < 1_000_000
    said = cli("gc", "--older-than", "0s", "--compact").stdout
    assert re.search(r"compacted the database: [\d.]+ (KiB|MiB) -> [\d.]+ KiB", said), said
    assert [r["id"] for r in cli.json("runs")["runs"]] == ["kept"]
    assert cli.json("inspect", "kept")["run"]["status"] == "pending"


def test_gc_compact_is_refused_where_it_has_no_meaning(cli):
    refused = cli("--world", "memory://", "gc", "--older-than", "0s", "--compact", ok=False)
    assert "--compact applies to a SQLite world only" in refused.stderr
