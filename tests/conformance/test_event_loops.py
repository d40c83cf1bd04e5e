"""durable inside an asyncio app: a thread that runs an event loop, durable's own threads.

A web app (FastAPI, uvicorn) or a notebook calls workflows from its event loop's thread, awaits
runs there and cancels them from anywhere; these tests do the same with the real engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import durable
from durable import step, workflow
from durable.testing import TestWorld, world


@pytest.fixture
def env() -> Iterator[TestWorld]:
    with world() as running:
        yield running


# -- a sync workflow with an async step, called where an event loop runs ------------------------


@step
async def tag_async(x: int) -> str:
    await asyncio.sleep(0)
    return f"{x} in {durable.step_info().run_id}"


@step(timeout=5)
async def tag_async_timed(x: int) -> str:
    await asyncio.sleep(0)
    return f"{x} in {durable.step_info().run_id}"


@workflow
def sync_with_async_steps(x: int) -> list[str]:
    return [tag_async(x), tag_async_timed(x + 1)]


async def test_a_sync_workflow_runs_its_async_steps_from_a_thread_running_a_loop(env):
    # asyncio.run() refuses to nest in a running loop: the steps failed every attempt.
    run_id = "called-in-a-loop"
    got = sync_with_async_steps.with_options(run_id=run_id)(1)  # an async handler's call
    assert got == [f"1 in {run_id}", f"2 in {run_id}"]


@workflow
async def async_with_a_step(x: int) -> str:
    return await tag_async(x)


async def test_replay_of_an_async_workflow_works_where_a_loop_runs():
    replayed = durable.replay(async_with_a_step, [3])
    assert replayed.status == "suspended" and [c.name for c in replayed.commands] == ["tag_async"]
