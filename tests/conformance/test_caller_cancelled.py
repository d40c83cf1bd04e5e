"""A caller that stops waiting for a workflow it called (a request's timeout, a client gone)
leaves the run going on in the background: the step in flight is not cut short to run again."""

from __future__ import annotations

import asyncio
import threading

import pytest

import durable
from durable import step, workflow

calls: list[str] = []
_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()


@step(name="caller_cancelled.slow")
async def slow(tag: str) -> str:
    with _lock:
        calls.append(f"start {tag}")
    await asyncio.sleep(0.5)
    with _lock:
        calls.append(f"end {tag}")
    return tag


@workflow(name="caller_cancelled.request")
async def handles_a_request(tag: str) -> str:
    return await slow(tag)


def test_a_caller_that_times_out_leaves_the_run_to_finish(engine):
    engine.runtime.options.time_skipping = None

    async def impatient() -> None:
        call = handles_a_request.with_options(run_id="impatient-1")("a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call, 0.1)
        assert await durable.get_run("impatient-1").wait(timeout=10) == "a"

    asyncio.run(impatient())
    assert calls == ["start a", "end a"]
