"""A step whose result the world refused to record (a full disk, an outage that passes) is not
run again when its run retries here: the result it returned is written again."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

import durable
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.world import NewEvent, RunUpdate
from worlds.memory import MemoryWorld

executed: Counter[str] = Counter()
_lock = threading.Lock()


class RefusingWorld(MemoryWorld):
    """A memory world that refuses the next ``refusals`` appends, as a full disk would."""

    def __init__(self) -> None:
        super().__init__("memory://refusing")
        self.refusals = 0
        self.refused = 0

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        with _lock:
            if self.refusals > 0:
                self.refusals -= 1
                self.refused += 1
                raise durable.WorldError("the disk is full (test)", transient=True)
        return super().append(run_id, owner, events, update)


@pytest.fixture
def refusing() -> Iterator[RefusingWorld]:
    executed.clear()
    world = RefusingWorld()
    runtime = Runtime(world, RuntimeOptions(poll_interval=0.01, lease_ttl=5.0))
    previous = use_runtime(runtime)
    try:
        yield world
    finally:
        use_runtime(previous)
        runtime.stop()


@durable.step(name="refused.charge")
def charge(amount: int) -> dict[str, int]:
    with _lock:
        executed["charge"] += 1
        if executed["charge"] == 1:
            _world[0].refusals = 3  # the writes of its result fail three times
    return {"charged": amount}


@durable.step(name="refused.receipt")
def receipt(charged: dict[str, int]) -> str:
    with _lock:
        executed["receipt"] += 1
    return f"receipt for {charged['charged']}"


_world: list[RefusingWorld] = []


@durable.workflow(name="refused.checkout")
def checkout(amount: int) -> str:
    return receipt(charge(amount))


@durable.workflow(name="refused.checkout_async")
async def checkout_async(amount: int) -> str:
    return await receipt.run_async(await charge.run_async(amount))


@pytest.mark.parametrize("flow", [checkout, checkout_async], ids=["sync", "async"])
def test_a_refused_result_is_written_again_not_run_again(refusing, flow):
    _world[:] = [refusing]
    run = flow.start(42)
    assert run.result(timeout=20) == "receipt for 42"
    assert refusing.refused == 3
    assert executed == {"charge": 1, "receipt": 1}
    completed = [e.name for e in run.events() if e.kind == "step_completed"]
    assert completed == ["refused.charge", "refused.receipt"]


_saw_first_recorded: list[bool] = []


@durable.step(name="refused.first")
def first() -> int:
    with _lock:
        executed["first"] += 1
        if executed["first"] == 1:
            _world[0].refusals = 1  # the write that carries this result is refused
    return 1


@durable.step(name="refused.later")
def later(i: int) -> int:
    # Nothing may start before what it may depend on is durable: the first step's result.
    run_id = durable.step_info().run_id
    recorded = {e.op_id for e in _world[0].read_events(run_id) if e.kind == "step_completed"}
    with _lock:
        executed[f"later {i}"] += 1
        _saw_first_recorded.append("1" in recorded)
    return i


@durable.workflow(name="refused.fan_out_after")
async def fan_out_after() -> list[int]:
    await first.run_async()
    return list(await asyncio.gather(*(later.run_async(i) for i in range(3))))


def test_a_refused_write_stops_the_branches_that_would_start_after_it(refusing):
    _world[:] = [refusing]
    _saw_first_recorded.clear()
    run = fan_out_after.start()
    assert run.result(timeout=20) == [0, 1, 2]
    assert refusing.refused == 1
    assert executed["first"] == 1
    assert _saw_first_recorded and all(_saw_first_recorded), _saw_first_recorded
