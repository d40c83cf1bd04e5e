"""Workflow timeouts on every world, live and under forced replay: a run still unfinished at its
deadline is cancelled there (its sleeps and waits end early for it) and its saga undone."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import durable
from durable import (
    InvalidDuration,
    Saga,
    WorkflowCancelled,
    WorkflowTimedOut,
    create_hook,
    step,
    workflow,
)

done: list[str] = []


@pytest.fixture(autouse=True)
def _clear():
    done.clear()


@step(name="timeouts.mark")
def mark(text: str) -> str:
    done.append(text)
    return text


@workflow
def naps_a_day() -> str:
    mark("before")
    durable.sleep("1 day")
    return mark("after")


def _deadline_of(run) -> float:
    return run.record.created_at + 3600


def test_a_sleep_past_the_deadline_ends_at_the_deadline(engine):
    run = naps_a_day.with_options(timeout="1h").start()
    with pytest.raises(WorkflowTimedOut) as timed_out:
        run.result(timeout=20)
    assert isinstance(timed_out.value, WorkflowCancelled)  # caught as any cancellation
    assert timed_out.value.deadline == pytest.approx(_deadline_of(run), abs=1)
    assert "timed out: it was still unfinished at its deadline" in str(timed_out.value)
    assert done == ["before"]
    assert run.status == "cancelled"
    # Woken at the deadline, not when the sleep was due.
    assert engine.clock() == pytest.approx(_deadline_of(run), abs=60)
    with pytest.raises(WorkflowTimedOut):  # read back from the world, not only live
        durable.get_run(run.id).result(timeout=5)


def test_a_run_that_ends_in_time_is_not_touched_by_its_timeout(engine, caplog):
    timed = naps_a_day.with_options(timeout=timedelta(days=2), run_id="in-time")
    assert timed.start().result(timeout=20) == "after"
    with caplog.at_level(logging.WARNING, logger="durable"):
        again = timed.start()  # same id, same arguments: the same run, and no warning
    assert again.result(timeout=5) == "after"
    assert "other arguments" not in caplog.text and "another timeout" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="durable"):
        naps_a_day.with_options(timeout="1h", run_id="in-time").start()
    assert "run in-time already exists (completed) with another timeout" in caplog.text
    assert done == ["before", "after"]


@workflow
def books_then_waits(order: str) -> str:
    with Saga() as saga:
        mark(f"book {order}")
        saga.add(unbook, order)
        hook = create_hook(token=f"confirm:{order}")  # no timeout of its own
        return str(hook.wait())


@step
def unbook(order: str) -> str:
    return mark(f"unbook {order}")


def test_a_timeout_during_a_hook_wait_undoes_the_saga(engine):
    run = books_then_waits.with_options(timeout=90).start("o-1")
    with pytest.raises(WorkflowTimedOut):
        run.result(timeout=20)
    assert done == ["book o-1", "unbook o-1"]
    assert [e.kind for e in run.events()][-1] == "run_cancelled"


@workflow
def slow_child() -> str:
    mark("child started")
    durable.sleep("3 days")
    return mark("child done")


@workflow
def parent_of_a_slow_child() -> str:
    try:
        return slow_child.with_options(timeout="1 day")()
    except WorkflowTimedOut as exc:
        return f"child gave up: {type(exc).__name__}"


def test_a_child_run_can_have_a_timeout_of_its_own(engine):
    run = parent_of_a_slow_child.start()
    # Generous: on AWS (moto) under a loaded CI machine, this parent-child exchange once
    # took longer than 20 s.
    assert run.result(timeout=60) == "child gave up: WorkflowTimedOut"
    [child] = run.children()
    assert child.status == "cancelled"
    assert done == ["child started"]


@workflow
def parent_waits_for_a_slow_child() -> str:
    return slow_child()


def test_a_run_that_times_out_cancels_its_children(engine):
    run = parent_waits_for_a_slow_child.with_options(timeout="2h").start()
    with pytest.raises(WorkflowTimedOut):
        run.result(timeout=20)
    [child] = run.children()
    with pytest.raises(WorkflowCancelled):
        durable.get_run(child.id).result(timeout=20)
    assert done == ["child started"]


@pytest.mark.parametrize("bad", [0, -5, "soon", "-1h"])
def test_a_timeout_that_is_not_a_positive_duration_is_refused(bad):
    with pytest.raises(InvalidDuration) as refused:
        naps_a_day.with_options(timeout=bad)
    assert "duration" in str(refused.value) or "timeout must be positive" in str(refused.value)


@workflow
async def naps_a_day_async() -> str:
    await mark_async("before")
    await durable.sleep("1 day")
    return await mark_async("after")


@step
async def mark_async(text: str) -> str:
    done.append(text)
    return text


def test_an_async_run_times_out_the_same_way(engine):
    run = naps_a_day_async.with_options(timeout="1h").start()
    with pytest.raises(WorkflowTimedOut):
        run.result(timeout=20)
    assert done == ["before"]


def test_a_run_past_its_deadline_before_it_started_is_cancelled_unstarted(engine):
    run = naps_a_day.with_options(timeout=60, execute=False).start()
    engine.clock.advance("2 minutes")  # no worker took it meanwhile (none polls this world yet)
    with pytest.raises(WorkflowTimedOut):
        run.result(timeout=20)
    assert done == []
    assert [e.kind for e in run.events()] == ["run_created", "run_cancelled"]
