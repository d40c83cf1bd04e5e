"""Typed uses of the public API that ``mypy --strict`` must accept (checked by test_typing.py).

A line marked ``# type: ignore[...]`` must stay an error: strict mode reports an unused ignore.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from durable import resume_hook_async, step, workflow
from durable.testing import world


@step
def add_one(x: int) -> int:
    return x + 1


@step
async def add_two(x: int) -> int:
    return x + 2


@workflow
def sync_flow(x: int) -> int:
    value: int = add_one(x)
    return value


@workflow
async def async_flow(x: int) -> int:
    a: int = await add_one.run_async(x)
    b: int = await add_two(x)
    c, d = await asyncio.gather(add_one.run_async(1), add_two(2))
    return a + b + c + d


def a_sync_step_call_keeps_its_type(x: int) -> str:
    return add_one(x)  # type: ignore[return-value]


async def awaiting_a_sync_step_call_is_a_type_error(x: int) -> int:
    # It works at run time, but no type says "R in sync workflows, awaitable in async ones":
    # run_async is the spelling type checkers accept.
    value: int = await add_one(x)  # type: ignore[misc]
    return value


def workflows_keep_their_types() -> None:
    with world() as env:
        env.advance(timedelta(hours=1))
        env.advance("1 hour")
        env.advance(3600)
        direct: int = sync_flow(1)
        awaited: int = asyncio.run(async_flow(1))
        started: int = async_flow.start(1).result()
        print(direct, awaited, started)


def runs_are_typed_by_their_workflows_result() -> None:
    with world():
        sync_run = sync_flow.start(1)
        async_run = async_flow.with_options(run_id="typed-1").start(1)
        number: int = sync_run.result()
        other: int = async_run.result(timeout=5)
        print(number + other)
        wrong: str = sync_run.result()  # type: ignore[assignment]
        also_wrong: str = async_run.result()  # type: ignore[assignment]
        print(wrong, also_wrong)


async def awaiting_a_run_gives_its_result() -> int:
    run = async_flow.start(2)
    value: int = await run
    waited: int = await run.wait(timeout=5)
    return value + waited


async def start_async_gives_a_typed_run() -> int:
    run = await async_flow.start_async(3)
    other = await sync_flow.start_async(4)
    value: int = await run
    number: int = other.result()
    run_id: str = await resume_hook_async("token", {"ok": True})
    print(run_id)
    return value + number
