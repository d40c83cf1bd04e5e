"""Typed uses of the public API that ``mypy --strict`` must accept (checked by test_typing.py).

A line marked ``# type: ignore[...]`` must stay an error: strict mode reports an unused ignore.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, assert_type

from pydantic import BaseModel

import durable
from durable import Hook, RunStatus, resume_hook_async, step, workflow
from durable.testing import deploy, world


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


# -- hooks, branches, sleeps and method steps: typed by what they return, not Any -------------


class Decision(BaseModel):
    approved: bool


@workflow
def hook_payloads_have_the_models_type() -> bool:
    hook = durable.create_hook(model=Decision, timeout=timedelta(hours=1))
    assert_type(hook, Hook[Decision])
    decision = hook.wait()
    assert_type(decision, Decision)
    for later in hook:
        assert_type(later, Decision)
    print(decision.aproved)  # type: ignore[attr-defined]
    positional = durable.create_hook("typed-token", "1h", Decision)
    assert_type(positional, Hook[Decision])
    plain = durable.create_hook(timeout="24h")
    assert_type(plain, Hook[Any])  # without a model a payload is whatever JSON was delivered
    durable.create_hook(timeout=[1])  # type: ignore[call-overload]
    durable.create_hook(model=dict)  # type: ignore[type-var]
    return decision.approved


@workflow
async def awaiting_a_hook_gives_the_models_type() -> bool:
    decision = await durable.create_hook(model=Decision, timeout=90)
    assert_type(decision, Decision)
    async for later in durable.create_hook(model=Decision):
        assert_type(later, Decision)
    return decision.approved


@workflow
def sync_branches_give_lists(xs: list[int]) -> int:
    mapped = durable.map(add_one, xs, max_concurrency=4)
    assert_type(mapped, list[int])
    same = durable.parallel(lambda: add_one(1), lambda: add_one(2))
    assert_type(same, list[int])
    mixed = durable.parallel(lambda: add_one(1), lambda: "text", lambda: 2.5)
    assert_type(mixed, list[int | str | float])
    many = durable.parallel(*[functools.partial(add_one, x) for x in xs])
    assert_type(many, list[int])
    mapped.upper()  # type: ignore[attr-defined]
    durable.map(3, xs)  # type: ignore[call-overload]
    print(durable.map(add_one, ["not", "ints"]))  # type: ignore[arg-type]
    return sum(mapped) + sum(same)


@workflow
async def async_branches_are_awaited(xs: list[int]) -> int:
    mapped = await durable.map(add_two, xs)
    assert_type(mapped, list[int])
    through_run_async = await durable.map(add_one.run_async, xs)
    assert_type(through_run_async, list[int])
    pair = await durable.parallel(lambda: add_two(1), lambda: add_one.run_async(2))
    assert_type(pair, list[int])
    # A def step's group is an awaitable in async workflows too, but typed as its list (as
    # add_one(x) is typed int): run_async is the spelling type checkers accept.
    await durable.map(add_one, xs)  # type: ignore[misc]
    durable.map(add_two, xs)  # type: ignore[unused-coroutine]
    return sum(mapped) + sum(through_run_async) + sum(pair)


@workflow
def sync_sleeps_need_no_await() -> None:
    assert_type(durable.sleep("1h"), Awaitable[None])  # it has slept: awaiting it does nothing
    durable.sleep(timedelta(minutes=5))
    durable.sleep_until(durable.now() + timedelta(days=1))
    durable.sleep(None)  # type: ignore[arg-type]


@workflow
async def async_sleeps_are_awaited() -> None:
    await durable.sleep(30)
    await durable.sleep_until(durable.now() + timedelta(days=1))


class Billing:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    @step
    def charge(self, cents: int) -> int:
        return cents * self.rate


def method_steps_bind_their_instance(billing: Billing) -> int:
    charged = billing.charge(21)
    assert_type(charged, int)
    billing.charge("21")  # type: ignore[arg-type]
    billing.charge(21, 2)  # type: ignore[call-arg]
    text: str = billing.charge(1)  # type: ignore[assignment]
    print(text, Billing.charge.name)
    return charged


def run_statuses_are_a_literal(run: durable.Run[int]) -> RunStatus:
    status = run.status
    assert_type(status, RunStatus)
    wrong: RunStatus = "done"  # type: ignore[assignment]
    print(wrong)
    return status


def new_code_must_fit_the_workflow() -> None:
    def sync_flow_v2(x: int) -> int:
        return x + 2

    def wrong_signature(x: str, extra: bool) -> str:
        return x

    with deploy(sync_flow, sync_flow_v2):
        pass
    with deploy(sync_flow, wrong_signature):  # type: ignore[misc]
        pass
