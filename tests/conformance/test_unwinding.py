"""Code that runs while a run suspends (a ``finally``, an ``__exit__``, an ``except
BaseException``) performs nothing durable then: it runs when the run really goes on or ends.
Every world, live and under forced replay."""

from __future__ import annotations

import gc
import sys
import threading
from contextlib import asynccontextmanager

import pytest

import durable
from durable import step, workflow
from tests.cancelling import wait_on_hook

marks: list[str] = []
_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear():
    marks.clear()


@step(name="unwinding.mark")
def mark(text: str) -> str:
    with _lock:
        marks.append(text)
    return text


@step(name="unwinding.amark")
async def amark(text: str) -> str:
    with _lock:
        marks.append(text)
    return text


@workflow(name="unwinding.cleans_up_in_finally")
def cleans_up_in_finally() -> str:
    try:
        mark("start")
        durable.sleep("1 day")
        return mark("after")
    finally:
        mark("cleanup")


def test_a_finally_around_a_long_sleep_runs_once_the_sleep_is_over(engine):
    assert cleans_up_in_finally() == "after"
    assert marks == ["start", "after", "cleanup"]


@workflow(name="unwinding.swallows_its_suspension")
def swallows_its_suspension() -> str:
    try:
        durable.sleep("1 day")
    except BaseException:  # noqa: BLE001 - what a careless workflow does
        pass
    return mark("after")


def test_a_suspension_caught_by_the_workflow_still_suspends_it(engine):
    started = engine.clock()
    assert swallows_its_suspension() == "after"
    assert engine.clock() - started >= 86400
    assert marks == ["after"]


@workflow(name="unwinding.returns_from_its_suspension")
def returns_from_its_suspension() -> str:
    try:
        durable.sleep("1 day")
    except BaseException:  # noqa: BLE001
        return "gave up"
    return "slept"


def test_a_workflow_returning_from_its_caught_suspension_still_sleeps(engine):
    started = engine.clock()
    assert returns_from_its_suspension() == "slept"
    assert engine.clock() - started >= 86400


@asynccontextmanager
async def held(name: str):
    await amark(f"take {name}")
    try:
        yield
    finally:
        await amark(f"release {name}")


@workflow(name="unwinding.holds_across_a_hook")
async def holds_across_a_hook(token: str) -> str:
    async with held("lock"):
        payload = await durable.create_hook(token=token)
        await amark(f"got {payload}")
    return payload


def test_an_async_context_manager_around_a_hook_exits_after_the_payload(engine):
    engine.runtime.options.time_skipping = None
    run = holds_across_a_hook.start("unwind-hook")
    wait_on_hook(run, engine.world)
    assert marks == ["take lock"]  # not released while the run waits
    durable.resume_hook("unwind-hook", "yes")
    assert run.result(timeout=10) == "yes"
    assert marks == ["take lock", "got yes", "release lock"]


@workflow(name="unwinding.parallel_in_try")
def waits_in_a_branch() -> list[str]:
    try:
        return durable.parallel(lambda: mark("a"), lambda: durable.sleep("1 day") or mark("b"))
    finally:
        mark("done")


def test_a_finally_around_a_branch_that_sleeps_runs_once_the_branches_end(engine):
    assert waits_in_a_branch() == ["a", "b"]
    assert marks[-1] == "done" and sorted(marks) == ["a", "b", "done"]


def _drop_an_unfinished_generator() -> None:
    def gen():
        try:
            yield 1
        finally:
            mark("generator finally")

    started = gen()
    next(started)
    holder: dict[str, object] = {"generator": started}
    holder["self"] = holder  # a cycle: only the garbage collector frees it


@workflow(name="unwinding.collects_garbage")
def collects_garbage() -> str:
    mark("b0")
    gc.collect()  # finalizes a generator that is not this run's
    return mark("b1")


def test_a_generator_the_collector_finalizes_records_nothing_in_the_run_it_interrupts(engine):
    ignored: list[BaseException | None] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: ignored.append(unraisable.exc_value)
    gc.disable()  # only the workflow's own gc.collect() finalizes the generator
    try:
        _drop_an_unfinished_generator()
        assert collects_garbage() == "b1"
    finally:
        gc.enable()
        sys.unraisablehook = previous_hook
    # Python reports what the generator's finally raised: the step it tried was refused.
    assert any("while the garbage collector finalized" in str(e) for e in ignored), ignored
    assert marks == ["b0", "b1"]
    run_steps = [e.name for e in durable.get_run(_last_run_id(engine)).events()
                 if e.kind == "step_completed"]
    assert run_steps == ["unwinding.mark", "unwinding.mark"]


def _last_run_id(engine) -> str:
    [record] = engine.world.list_runs(limit=1)
    return record.id


async def _fetches():
    try:
        yield await amark("g0")
        yield await amark("g1")
    finally:
        await amark("generator closed")


@workflow(name="unwinding.abandons_an_async_generator")
async def abandons_an_async_generator() -> list[str]:
    async for first in _fetches():  # noqa: B007 - kept after the loop
        break  # the loop closes the generator later, when it is dropped
    await durable.sleep("1 day")
    return [first, await amark("after")]


def test_an_abandoned_async_generator_records_nothing_when_the_loop_closes_it(engine):
    run = abandons_an_async_generator.start()
    assert run.result(timeout=10) == ["g0", "after"]
    steps = [e for e in run.events() if e.kind == "step_completed"]
    assert len(steps) == 2 and "generator closed" not in marks
