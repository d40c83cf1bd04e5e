"""In an async run, a branch waiting on a hook or a long sleep goes on as soon as it may while
sibling steps still run, as in a sync run, rather than once the last of them has finished.

Each sibling step below waits for the waiting branch's next step: if that branch were held until
the sibling finished, the sibling would give up after ``PATIENCE`` seconds and say so. Every world,
live (forced replay suspends at every durable point, so nothing waits beside anything there)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import durable
from durable import step, workflow

PATIENCE = 10.0
went_on = threading.Event()


@pytest.fixture(autouse=True)
def _live_only(engine):
    if engine.forced_replay:
        pytest.skip("forced replay suspends every branch at once")
    went_on.clear()


@step(name="beside_async.sibling")
def sibling() -> str:
    return "saw it" if went_on.wait(PATIENCE) else "gave up"


@step(name="beside_async.after")
async def after(value: object) -> str:
    went_on.set()
    return f"after {value}"


@workflow(name="beside_async.hook")
async def hook_beside_a_step(token: str) -> list[str]:
    hook = durable.create_hook(token=token)

    async def waiter() -> str:
        return await after(await hook)

    return await asyncio.gather(waiter(), sibling.run_async())


def test_a_hook_resumed_while_a_sibling_step_runs_goes_on_at_once(engine):
    run = hook_beside_a_step.start("beside-async-1")
    deadline = time.monotonic() + PATIENCE
    while not engine.world.list_hooks(run.id):
        assert time.monotonic() < deadline, "no hook was created"
        time.sleep(0.01)
    durable.resume_hook("beside-async-1", "payload")
    assert run.result(timeout=20) == ["after payload", "saw it"]


@workflow(name="beside_async.sleep")
async def sleep_beside_a_step() -> list[str]:
    async def sleeper() -> str:
        await durable.sleep(2)  # past the inline wait limit of 0 s: a long sleep here
        return await after("the sleep")

    return await durable.parallel(sleeper, sibling.run_async)


def test_a_sleep_that_comes_due_while_a_sibling_step_runs_goes_on_at_once(engine):
    run = sleep_beside_a_step.start()
    time.sleep(0.3)
    engine.clock.advance(3)
    assert run.result(timeout=20) == ["after the sleep", "saw it"]


@workflow(name="beside_async.child")
async def quick_child() -> str:
    return "the child"


@workflow(name="beside_async.parent")
async def child_beside_a_step() -> list[str]:
    async def parent_waits() -> str:
        return await after(await quick_child())

    return await asyncio.gather(parent_waits(), sibling.run_async())


def test_a_child_run_that_finishes_while_a_sibling_step_runs_is_seen_at_once(engine):
    run = child_beside_a_step.start()
    assert run.result(timeout=20) == ["after the child", "saw it"]
