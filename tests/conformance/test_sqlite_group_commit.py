"""The SQLite world's group commit: appends that queue for the write lock share a transaction."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable._errors import LeaseLost, WorldError
from durable.world import NewEvent, NewRun, RunUpdate
from worlds.sqlite import SqliteWorld

TTL = 30.0
A = "worker-a"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SqliteWorld]:
    opened = SqliteWorld(f"sqlite:///{tmp_path / 'durable.db'}")
    yield opened
    opened.close()


def statements(world: SqliteWorld) -> list[str]:
    """Record every statement the world's writing connection runs from now on."""
    seen: list[str] = []
    conn = world._conn
    assert conn is not None
    conn.set_trace_callback(seen.append)
    return seen


def queued_while_locked(
    world: SqliteWorld, calls: dict[str, tuple[str, list[NewEvent], RunUpdate | None]]
) -> dict[str, object]:
    """Start one append per entry while the write lock is held, release it once all queue.

    Returns what each append returned, or the exception it raised.
    """
    outcomes: dict[str, object] = {}

    def call(run_id: str, owner: str, events: list[NewEvent], update: RunUpdate | None) -> None:
        try:
            outcomes[run_id] = world.append(run_id, owner, events, update)
        except Exception as exc:  # noqa: BLE001 - checked by the test
            outcomes[run_id] = exc

    threads = [
        threading.Thread(target=call, args=(run_id, *args)) for run_id, args in calls.items()
    ]
    with world._lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(world._appends._waiting) < len(calls):
            assert time.monotonic() < deadline, "the appends never queued"
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return outcomes


def step(op: str) -> NewEvent:
    return NewEvent("step_completed", op, "work", op.encode())


def test_queued_appends_of_many_runs_commit_together(world: SqliteWorld) -> None:
    runs = [f"run-{i}" for i in range(12)]
    for run_id in runs:
        world.create_run(NewRun(run_id, "wf", b"{}"), owner=A, lease_ttl=TTL)
    world.append(runs[0], A, [step("1")])
    world.request_cancel(runs[1])
    seen = statements(world)

    calls: dict[str, tuple[str, list[NewEvent], RunUpdate | None]] = {
        run_id: (A, [step("2")], None) for run_id in runs
    }
    calls[runs[2]] = ("someone-else", [step("2")], None)
    calls[runs[3]] = (
        A,
        [step("2"), NewEvent("run_completed")],
        RunUpdate("completed", output=b'"done"', release=True),
    )
    outcomes = queued_while_locked(world, calls)

    # One transaction: every statement between one BEGIN and its COMMIT.
    assert seen[0] == "BEGIN IMMEDIATE" and seen[-1] == "COMMIT", seen
    assert [sql for sql in seen if sql.startswith(("BEGIN", "COMMIT", "ROLLBACK"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert isinstance(outcomes[runs[2]], LeaseLost)
    assert outcomes[runs[1]] is True  # cancel requested: written, and the caller is told
    assert [outcomes[r] for r in runs if r not in (runs[1], runs[2])] == [False] * 10
    assert [e.seq for e in world.read_events(runs[0])] == [1, 2, 3]
    assert [e.kind for e in world.read_events(runs[2])] == ["run_created"]
    finished = world.get_run(runs[3])
    assert finished is not None and finished.status == "completed"
    assert finished.output == b'"done"' and finished.lease_owner is None
    for run_id in runs[4:]:
        events = world.read_events(run_id)
        assert [(e.seq, e.op_id, e.data) for e in events[1:]] == [(2, "2", b"2")]


def test_an_append_that_breaks_the_transaction_fails_alone(world: SqliteWorld) -> None:
    runs = [f"run-{i}" for i in range(5)]
    for run_id in runs:
        world.create_run(NewRun(run_id, "wf", b"{}"), owner=A, lease_ttl=TTL)
    broken = NewEvent(None, "2", "work", b"x")  # type: ignore[arg-type]  # NOT NULL kind
    calls: dict[str, tuple[str, list[NewEvent], RunUpdate | None]] = {
        run_id: (A, [step("2")], None) for run_id in runs
    }
    calls[runs[2]] = (A, [broken], None)

    outcomes = queued_while_locked(world, calls)

    assert isinstance(outcomes[runs[2]], WorldError)
    assert "run-2" in str(outcomes[runs[2]])
    for run_id in runs:
        expected = ["run_created"] + ([] if run_id == runs[2] else ["step_completed"])
        assert [e.kind for e in world.read_events(run_id)] == expected
        if run_id != runs[2]:
            assert outcomes[run_id] is False


def test_many_threads_appending_record_every_event_once(world: SqliteWorld) -> None:
    runs = [f"run-{i}" for i in range(16)]
    for run_id in runs:
        world.create_run(NewRun(run_id, "wf", b"{}"), owner=A, lease_ttl=TTL)

    def drive(run_id: str) -> None:
        for i in range(2, 52):
            world.append(run_id, A, [step(str(i))])

    threads = [threading.Thread(target=drive, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    for run_id in runs:
        events = world.read_events(run_id)
        assert [e.seq for e in events] == list(range(1, 52))
        assert [e.op_id for e in events[1:]] == [str(i) for i in range(2, 52)]


def test_a_group_blocked_by_another_process_fails_whole_and_loses_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "durable.db"
    world = SqliteWorld(f"sqlite:///{db}?busy_timeout=0.2")
    try:
        runs = [f"run-{i}" for i in range(4)]
        for run_id in runs:
            world.create_run(NewRun(run_id, "wf", b"{}"), owner=A, lease_ttl=TTL)
            world.append(run_id, A, [step("2")])
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            outcomes = queued_while_locked(world, {r: (A, [step("3")], None) for r in runs})
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        for run_id in runs:
            error = outcomes[run_id]
            assert isinstance(error, WorldError) and not isinstance(error, LeaseLost)
            assert "locked" in str(error) and error.transient
            assert [e.seq for e in world.read_events(run_id)] == [1, 2]
        # Once the other process lets go, the same appends go through.
        outcomes = queued_while_locked(world, {r: (A, [step("3")], None) for r in runs})
        assert all(outcome is False for outcome in outcomes.values())
        for run_id in runs:
            assert [e.op_id for e in world.read_events(run_id)] == [None, "2", "3"]
    finally:
        world.close()
