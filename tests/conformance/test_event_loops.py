"""durable inside an asyncio app: a thread that runs an event loop, durable's own threads.

A web app (FastAPI, uvicorn) or a notebook calls workflows from its event loop's thread, awaits
runs there and cancels them from anywhere; these tests do the same with the real engine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator

import pytest

import durable
from durable import step, workflow
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.testing import TestWorld, world
from worlds.memory import MemoryWorld


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


# -- cancelling an async run's in-process wait ------------------------------------------------


@pytest.fixture
def real_time() -> Iterator[Runtime]:
    """A world on the wall clock where waits of up to 5 s stay in-process, as by default."""
    runtime = Runtime(MemoryWorld("memory://"), RuntimeOptions(poll_interval=0.01))
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()


reached: dict[str, threading.Event] = {}


@step
async def arrive(label: str) -> None:
    reached[label].set()


@workflow
async def naps(label: str) -> str:
    await arrive(label)
    await durable.sleep(4)  # in-process: under the 5 s limit
    return "slept"


@step(retry=durable.RetryPolicy(max_attempts=2, jitter=False))
async def refuses_once(label: str) -> str:
    if durable.step_info().attempt == 1:
        reached[label].set()
        raise durable.RetryableError("later", retry_after=4)
    return "retried"


@workflow
async def retries_later(label: str) -> str:
    return await refuses_once(label)


async def _cancel_while_it_waits(label: str, awaiting: Awaitable[object]) -> float:
    """Cancel run ``label`` (from another thread, as a sync endpoint does) once it waits."""
    reached[label] = threading.Event()
    waiting = asyncio.ensure_future(awaiting)
    while not reached[label].is_set():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # into the wait
    began = time.monotonic()
    assert await asyncio.to_thread(durable.get_run(label).cancel)
    with pytest.raises(durable.WorkflowCancelled):
        await waiting
    return time.monotonic() - began


@pytest.mark.parametrize("how", ["awaited", "started"])
async def test_cancel_ends_an_async_runs_in_process_sleep_at_once(real_time, how):
    label = f"naps-{how}"
    flow = naps.with_options(run_id=label)
    awaiting = flow(label) if how == "awaited" else flow.start(label).wait()
    assert await _cancel_while_it_waits(label, awaiting) < 1.0  # not the rest of 4 s


async def test_cancel_ends_an_async_steps_retry_delay_at_once(real_time):
    label = "retries-later"
    awaiting = retries_later.with_options(run_id=label)(label)
    assert await _cancel_while_it_waits(label, awaiting) < 1.0


# -- def steps of async workflows ----------------------------------------------------------------


BLOCKING_BRANCHES = 40  # more than any loop's default executor has threads (32 at most)
all_in: threading.Barrier | None = None


@step(retry=durable.RetryPolicy(max_attempts=1))
def blocking(i: int) -> str:
    assert all_in is not None
    all_in.wait(timeout=5)  # every branch at once, or none gets past
    return threading.current_thread().name


@workflow
async def blocking_fan_out(n: int) -> list[str]:
    return await durable.map(blocking, list(range(n)))


async def test_def_steps_of_an_async_workflow_all_run_at_once_on_durables_threads(env):
    global all_in
    all_in = threading.Barrier(BLOCKING_BRANCHES)
    names = await blocking_fan_out(BLOCKING_BRANCHES)
    assert len(names) == BLOCKING_BRANCHES
    assert all(name.startswith("durable-step") for name in names), set(names)


# -- a sync wait on the loop that executes the run -----------------------------------------------


@workflow
async def short_nap(label: str) -> str:
    await durable.sleep(0.3)  # in-process, on the loop executing the run
    return f"{label} woke"


async def test_result_on_the_loop_executing_the_run_is_refused_not_a_deadlock(real_time):
    task = asyncio.ensure_future(short_nap.with_options(run_id="nap-here")("nap-here"))
    await asyncio.sleep(0.05)  # the task awaits the workflow; it sleeps on this loop
    began = time.monotonic()
    with pytest.raises(durable.ConfigurationError, match="await run"):
        durable.get_run("nap-here").result(timeout=5)
    assert time.monotonic() - began < 1.0
    assert await task == "nap-here woke"
    assert durable.get_run("nap-here").result() == "nap-here woke"  # finished: no refusal


async def test_result_on_a_loop_that_does_not_execute_the_run_waits(real_time):
    run = short_nap.start("elsewhere")  # executes on the runtime's own loop, not this one
    assert run.result(timeout=5) == "elsewhere woke"


@step
async def waits_for_another(label: str) -> str:
    try:
        return str(short_nap.start(label).result(timeout=5))
    except durable.ConfigurationError as exc:
        return f"refused: {exc}"


@workflow
async def starts_another(label: str) -> str:
    return await waits_for_another(label)


async def test_result_in_a_step_on_the_loop_that_executes_the_run_is_refused(real_time):
    said = await starts_another.start("nested").wait(timeout=5)
    assert said.startswith("refused: run ") and "await run" in said


@workflow
async def narrates(label: str) -> str:
    await speak(label)
    await durable.sleep(0.3)  # in-process, on the loop executing the run
    return "told"


@step
async def speak(label: str) -> None:
    durable.stream("story", keep_open=True).write(label)  # open until the run ends


async def test_a_sync_stream_on_the_loop_executing_the_run_is_refused_not_a_deadlock(real_time):
    task = asyncio.ensure_future(narrates.with_options(run_id="story-here")("once"))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(durable.ConfigurationError, match="run.astream"):
        for _ in durable.get_run("story-here").stream("story", timeout=5):
            pass
    assert time.monotonic() - began < 1.0
    assert await task == "told"


# -- a step a TaskGroup cancelled, replayed ----------------------------------------------------

charges: list[int] = []


@step
async def charge(x: int) -> int:
    charges.append(x)  # a side effect
    await asyncio.sleep(0.05)
    return x


@step(retry=durable.RetryPolicy(max_attempts=1))
async def refuse() -> None:
    raise KeyError("refused")


@workflow
async def charge_or_refuse() -> str:
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(charge(1))
            group.create_task(refuse())
    except* KeyError:
        pass
    for _ in range(3):
        await durable.sleep("1h")  # each wake replays the group
    return "done"


def test_a_step_a_taskgroup_cancelled_does_not_run_again_on_each_replay(env):
    # The sibling's failure cancelled it mid-step, leaving no record: on each replay it started
    # live again before the sibling's recorded failure could cancel it again.
    charges.clear()
    assert charge_or_refuse.start().result(timeout=20) == "done"
    assert charges == [1]
