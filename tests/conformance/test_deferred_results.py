"""A step's result may ride along with its run's next write, but never waits long for one.

Live runs defer a step's result to the run's next durable write (the next step's start, a sleep,
the outcome), which saves a commit wherever the workflow reaches one right away. Checked here on
every world: what a step depends on is durable before it starts, a result is written by the
flusher when the workflow's own code is slow, and the last step shares the outcome's write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest

import durable
from durable import step, workflow
from durable._flusher import MAX_DEFER
from durable.world import NewEvent, RunUpdate, World

_seen_in_step: dict[str, list[str]] = {}


@step
def log_so_far(tag: str) -> str:
    """Returns the kinds of the events its run has recorded at the moment it starts."""
    run_id = durable.step_info().run_id
    world = durable.get_runtime().world
    _seen_in_step[tag] = [f"{e.kind}:{e.op_id}" for e in world.read_events(run_id)]
    return tag


@workflow
def key_then_charge(tag: str) -> str:
    key = durable.uuid4()
    log_so_far(tag + "-first")
    log_so_far(tag + "-second")
    return f"{tag}:{key}"


def test_a_step_starts_only_after_what_it_may_depend_on_is_recorded(engine):
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    run = key_then_charge.start("k")
    assert run.result(timeout=30).startswith("k:")
    # The uuid4() value a step may take as its idempotency key is durable before the step runs
    # (a crash mid-step must replay the same key), and so is the result of the step before.
    assert "value_recorded:1" in _seen_in_step["k-first"]
    assert "step_completed:2" in _seen_in_step["k-second"]


_release = threading.Event()
_stepped = threading.Event()


@step
def quick(n: int) -> int:
    return n + 1


@workflow
def slow_code_after_a_step(n: int) -> int:
    value = quick(n)
    _stepped.set()
    _release.wait(10)  # the workflow's own code, slow (it should not be, but it may)
    return value


def test_a_result_is_written_soon_however_long_the_workflow_code_takes(engine):
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    _release.clear()
    _stepped.clear()
    run = slow_code_after_a_step.start(1)
    try:
        assert _stepped.wait(10)
        started = time.monotonic()
        while not any(e.kind == "step_completed" for e in engine.world.read_events(run.id)):
            assert time.monotonic() - started < 2.0, "the step's result was not written"
            time.sleep(MAX_DEFER / 4)
        # Written by the flusher while the workflow's code still runs, within a few periods
        # (generous: a loaded machine delays the thread).
        assert time.monotonic() - started < 1.0
        assert engine.world.get_run(run.id).status == "running"
    finally:
        _release.set()
    assert run.result(timeout=30) == 2
    kinds = [e.kind for e in engine.world.read_events(run.id)]
    assert kinds == ["run_created", "step_completed", "run_completed"]


class _CountingWorld:
    """The engine's world, counting the appends it is asked for (everything else passes)."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.appends: list[tuple[list[str], str | None]] = []

    def append(
        self, run_id: str, owner: str, events: Any, update: RunUpdate | None = None
    ) -> bool:
        batch: list[NewEvent] = list(events)
        self.appends.append(([e.kind for e in batch], update.status if update else None))
        return self._world.append(run_id, owner, batch, update)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)


@workflow
def three_steps(n: int) -> int:
    return quick(quick(quick(n)))


def test_the_last_step_shares_the_outcome_write(engine, monkeypatch):
    counting = _CountingWorld(engine.runtime.world)
    monkeypatch.setattr(engine.runtime, "world", counting)
    assert three_steps(0) == 3
    if engine.forced_replay:
        assert len(counting.appends) >= 4
        return
    # Each step's result goes with the next step's start, the last with the outcome.
    assert counting.appends == [
        (["step_completed"], None),
        (["step_completed"], None),
        (["step_completed", "run_completed"], "completed"),
    ]


_lock_held = threading.Event()


@step
def takes_the_write_lock_away(db_path: str) -> int:
    """Returns while another connection holds the SQLite write lock for half a second."""

    def hold() -> None:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        _lock_held.set()
        time.sleep(0.5)
        other.execute("ROLLBACK")
        other.close()

    threading.Thread(target=hold, daemon=True).start()
    assert _lock_held.wait(5)
    return 1


@workflow
def key_while_the_flusher_waits(db_path: str) -> str:
    takes_the_write_lock_away(db_path)
    key = durable.uuid4()
    time.sleep(0.1)  # the flusher takes the result and the key, and waits for the lock
    return log_so_far(f"waited-{key}")


def test_a_step_waits_for_the_flusher_write_carrying_what_it_depends_on(engine, tmp_path):
    if engine.forced_replay or engine.kind != "sqlite":
        pytest.skip("needs another connection holding the SQLite write lock")
    _lock_held.clear()
    db_path = engine.world.path  # type: ignore[attr-defined]
    tag = key_while_the_flusher_waits(str(db_path))
    seen = _seen_in_step[tag]
    assert "step_completed:1" in seen and "value_recorded:2" in seen, seen


@step
def mark(what: str) -> str:
    _marked.append(what)
    return what


_marked: list[str] = []
_cancel_asked = threading.Event()


@workflow
def slow_between_steps() -> str:
    mark("before")
    _cancel_asked.wait(10)  # slow workflow code, cancelled from elsewhere meanwhile
    time.sleep(0.05)
    return mark("after")


def test_a_run_cancelled_during_slow_workflow_code_starts_no_more_steps(engine, monkeypatch):
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    monkeypatch.setattr("durable._engine._QUIET", 0.2)
    _marked.clear()
    _cancel_asked.clear()
    run = slow_between_steps.start()
    deadline = time.monotonic() + 10
    while _marked != ["before"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # the flusher has written "before"; nothing else will be written for a while
    engine.world.request_cancel(run.id)  # as another process would: this one is not told
    _cancel_asked.set()
    with pytest.raises(durable.WorkflowCancelled):
        run.result(timeout=30)
    assert _marked == ["before"]


@workflow
def fans_out(n: int) -> list[str]:
    log_so_far("fan-before")
    seen = durable.map(lambda i: [quick(i), log_so_far(f"fan-{i}")][1], range(n))
    log_so_far("fan-after")
    return seen


def test_a_branch_step_waits_for_its_own_line_of_execution(engine):
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    n = 20
    fans_out(n)
    for i in range(n):
        seen = _seen_in_step[f"fan-{i}"]
        assert "step_completed:1" in seen  # the step before the fan-out
        assert f"step_completed:2.{i}.1" in seen  # this branch's own earlier step
    after = _seen_in_step["fan-after"]  # and after the join, every branch's steps
    assert all(f"step_completed:2.{i}.{k}" in after for i in range(n) for k in (1, 2))


@workflow
def one_step_per_branch(n: int) -> int:
    return sum(durable.map(quick, range(n)))


def test_branches_do_not_write_their_siblings_results_one_by_one(engine, monkeypatch):
    # A branch's step need not wait for its concurrent siblings' results: when each branch
    # starting its step wrote them, a map over 100 made 84 writes of one result each.
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    counting = _CountingWorld(engine.runtime.world)
    monkeypatch.setattr(engine.runtime, "world", counting)
    n = 60
    assert one_step_per_branch(n) == sum(range(1, n + 1))
    assert len(counting.appends) <= n // 4, counting.appends
