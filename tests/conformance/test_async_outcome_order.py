"""A replay hands concurrent steps' recorded outcomes back in the order the log holds them, so
an async workflow that reacts to the first one (the error ``asyncio.gather`` raises, the step
``asyncio.as_completed`` yields first) takes the same path on replay as it did live. Every world,
live and under forced replay."""

from __future__ import annotations

import asyncio

import durable
from durable import RetryPolicy, step, workflow


@step(name="outcome_order.fails_after", retry=RetryPolicy(max_attempts=1))
async def fails_after(message: str, delay: float) -> int:
    await asyncio.sleep(delay)
    raise ValueError(message)


@step(name="outcome_order.handle")
async def handle(which: str) -> str:
    return f"handled {which}"


@workflow(name="outcome_order.first_error")
async def first_error() -> str:
    try:
        await asyncio.gather(fails_after("slow", 0.3), fails_after("fast", 0.0))
    except ValueError as exc:
        first = str(exc)
    handled = await handle(first)  # a replay taking the other path would diverge here
    await durable.sleep("1h")  # suspends: the run goes on in a replay of its log
    return handled


def test_the_error_a_gather_raised_live_is_raised_again_on_replay(engine):
    run = first_error.start()
    assert run.result(timeout=20) == "handled fast"
    assert [e.name for e in run.events() if e.kind == "step_completed"] == [
        "outcome_order.handle"
    ]


@step(name="outcome_order.returns_after")
async def returns_after(value: str, delay: float) -> str:
    await asyncio.sleep(delay)
    return value


@workflow(name="outcome_order.first_done")
async def first_done() -> list[str]:
    order = []
    for done in asyncio.as_completed(
        [returns_after("slow", 0.3), returns_after("medium", 0.15), returns_after("fast", 0.0)]
    ):
        value = await done
        order.append(await handle(value))  # each in the order the values came
    await durable.sleep("1h")
    return order


def test_as_completed_yields_recorded_steps_in_the_order_they_finished(engine):
    run = first_done.start()
    assert run.result(timeout=20) == ["handled fast", "handled medium", "handled slow"]
