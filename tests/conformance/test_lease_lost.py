"""A worker that lost its run's lease (paused past it; another worker took the run over) starts
no more steps of it: its branches waiting to start stop too. Every world, live and forced replay.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

import durable
from durable import step, workflow

executed: Counter[str] = Counter()
_lock = threading.Lock()
_engine: list[Any] = []
_stolen = threading.Event()


@pytest.fixture(autouse=True)
def _install(engine):
    executed.clear()
    _stolen.clear()
    _engine[:] = [engine]
    engine.runtime.options.time_skipping = None
    yield
    _engine.clear()


def _take_over_meanwhile() -> None:
    """As if this worker paused past its lease while the step ran, and another took the run."""
    engine = _engine[0]
    info = durable.step_info()
    engine.clock.advance(engine.runtime.options.lease_ttl + 1)
    taken = engine.world.acquire(info.run_id, "thief", 3600)
    assert taken is not None, "the lease had not lapsed"
    _stolen.set()


@step(name="lease.work")
def work(label: str) -> str:
    with _lock:
        executed[label] += 1
        first = executed[label] == 1
    if label == "slow" and first:
        threading.Event().wait(0.1)  # "b" beside it is under way
        _take_over_meanwhile()
    if label == "b":
        assert _stolen.wait(10)  # in flight too when the lease is lost
    return label


@workflow(name="lease.fan_out")
def fan_out() -> list[str]:
    return list(durable.map(work, ["slow", "b", "c", "d", "e"], max_concurrency=2))


@workflow(name="lease.gather_then_more")
async def gather_then_more() -> list[str]:
    first = await asyncio.gather(work.run_async("slow"), work.run_async("b"))
    rest = await asyncio.gather(work.run_async("c"), work.run_async("d"))
    return [*first, *rest, await work.run_async("e")]


@workflow(name="lease.sequence")
def sequence() -> list[str]:
    return [work("slow"), work("c"), work("d")]


@pytest.mark.parametrize("flow", [fan_out, gather_then_more, sequence], ids=lambda f: f.name)
def test_a_worker_that_lost_the_lease_starts_no_more_steps(engine, flow):
    run = flow.start()
    assert _stolen.wait(10)
    deadline = threading.Event()
    for _ in range(200):  # until this worker has given the run up
        if not engine.runtime.executing_runs():
            break
        deadline.wait(0.01)
    assert engine.runtime.executing_runs() == []
    assert executed["c"] == 0 and executed["d"] == 0 and executed["e"] == 0, executed
    engine.world.release(run.id, "thief")  # the other worker gives it back: it finishes here
    engine.runtime.wake()
    result = run.result(timeout=10)
    assert sorted(result) == sorted(["slow", "c", "d", *(["b", "e"] if "b" in result else [])])
    # The steps in flight when the lease was lost run again, and only they.
    assert executed["slow"] == 2 and executed["b"] in (0, 2)
    assert all(executed[label] == 1 for label in ("c", "d", "e") if label in result)
