"""Child workflows through the engine, on every world, live and under forced replay."""

from __future__ import annotations

import time

import pytest

import durable
from durable import WorkflowCancelled, WorkflowFailed, step, workflow

done: list[str] = []


@pytest.fixture(autouse=True)
def _clear():
    done.clear()


@step
def mark(text: str) -> str:
    done.append(text)
    return text


@workflow
def child_double(x: int) -> int:
    mark(f"child {x}")
    return x * 2


@workflow
def child_fails(x: int) -> int:
    raise ValueError(f"child {x} failed")


@workflow
def parent_calls(x: int) -> list[object]:
    a = child_double(x)
    handle = child_double.start(x + 1)
    b = handle.result()
    try:
        child_fails(x)
    except WorkflowFailed as exc:
        failure = exc.error_message
    return [a, b, failure]


def test_children_return_results_and_raise_failures(engine):
    run = parent_calls.start(5)
    assert run.result(timeout=20) == [10, 12, "child 5 failed"]
    assert sorted(done) == ["child 5", "child 6"]
    children = run.children()
    assert [c.workflow_name for c in children] == ["child_double", "child_double", "child_fails"]
    assert all(c.parent_id == run.id for c in children)
    assert [c.status for c in children] == ["completed", "completed", "failed"]
    assert children[0].id == f"{run.id}.1"


@workflow
async def async_parent(n: int) -> list[int]:
    first = await child_double(n)
    handles = [child_double.start(i) for i in range(3)]
    rest = [await h for h in handles]
    return [first, *rest]


def test_async_parent_awaits_children(engine):
    run = async_parent.start(7)
    assert run.result(timeout=20) == [14, 0, 2, 4]


@workflow
def sleepy_child() -> str:
    durable.sleep("30 days")
    return mark("woke")


@workflow
def parent_of_sleeper() -> str:
    return sleepy_child()


def test_cancelling_a_parent_cancels_its_children(engine):
    engine.runtime.options.time_skipping = None
    run = parent_of_sleeper.start()
    deadline = time.monotonic() + 10
    while not (run.children() and run.children()[0].status == "suspended"):
        assert time.monotonic() < deadline, "the child never went to sleep"
        time.sleep(0.01)
    child = run.children()[0]
    run.cancel()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    with pytest.raises(WorkflowCancelled):
        child.result(timeout=10)
    assert done == []


@workflow
def child_sleeps_long() -> str:
    durable.sleep("30 days")
    return "woke"


@workflow
def parent_cancels_its_child() -> list[object]:
    handle = child_sleeps_long.start()
    facts: list[object] = [isinstance(handle, durable.Run), handle.workflow_name]
    handle.cancel()
    try:
        handle.result()
    except WorkflowCancelled:
        facts.append("child cancelled")
    return facts


def test_a_started_child_is_a_run_the_parent_can_cancel(engine):
    engine.runtime.options.time_skipping = None  # the child must not just sleep its 30 days away
    run = parent_cancels_its_child.start()
    assert run.result(timeout=20) == [True, "child_sleeps_long", "child cancelled"]
    (child,) = run.children()
    assert child.status == "cancelled" and child.parent_id == run.id


@workflow
def parent_maps_children(n: int) -> list[int]:
    return durable.map(child_double, range(n))


def test_a_parent_waiting_on_children_in_branches_wakes_as_they_finish(engine):
    # One branch could decide to suspend while another took its child's notice into the run:
    # the parent then slept until its 60 s recheck (about 1 run in 100).
    engine.runtime.options.time_skipping = None
    # Fewer on moto, where 60 runs' requests queue behind each other on a loaded machine.
    runs = [parent_maps_children.start(5) for _ in range(3 if engine.kind == "aws" else 10)]
    for run in runs:
        assert run.result(timeout=50) == [0, 2, 4, 6, 8]


@workflow
def parent_of_one(x: int) -> int:
    return child_double(x)


def test_a_child_whose_id_another_run_holds_fails_the_parent_with_a_clear_error(engine):
    # Child ids are <parent id>.<position>: a top-level run may already hold one.
    squatter = child_double.with_options(run_id="order-7.1").start(100)
    assert squatter.result(timeout=20) == 200
    run = parent_of_one.with_options(run_id="order-7").start(1)
    with pytest.raises(WorkflowFailed) as failed:
        run.result(timeout=20)
    assert failed.value.error_type == "durable.ConfigurationError"
    assert "'order-7.1'" in failed.value.error_message
    assert "with_options(run_id=...)" in failed.value.error_message
    # The other run is left as it was.
    assert durable.get_run("order-7.1").result(timeout=5) == 200
    assert done == ["child 100"]


@workflow
def waits_on_a_run_by_id(run_id: str) -> int:
    return durable.get_run(run_id).result()


def test_waiting_on_a_run_handle_in_workflow_code_is_refused(engine):
    # Not recorded (a replay could see another outcome) and it holds the worker's thread.
    other = child_double.start(4)
    with pytest.raises(WorkflowFailed, match="is not durable: call or start the workflow"):
        waits_on_a_run_by_id.start(other.id).result(timeout=20)
    assert other.result(timeout=20) == 8
