"""A step starts only on a lease this worker still holds, however long the world took to answer
the calls made just before it (a read that waited out an outage, during which another worker
took the run over)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import durable
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.testing import Clock
from durable.world import RunRecord
from worlds.memory import MemoryWorld

TTL = 6.0
executed: Counter[str] = Counter()


class SlowReadWorld(MemoryWorld):
    """A memory world whose next ``get_run`` answers only after the lease lapsed and another
    worker took the run (as a read stuck behind a locked database would)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__("memory://slow-read", clock=clock)
        self.clock = clock
        self.stall: str | None = None

    def get_run(self, run_id: str) -> RunRecord | None:
        if self.stall == run_id and threading.current_thread() is not threading.main_thread():
            self.stall = None
            self.clock.advance(TTL + 1)
            assert self.acquire(run_id, "thief", 3600) is not None
        return super().get_run(run_id)


@pytest.fixture
def slow() -> Iterator[SlowReadWorld]:
    executed.clear()
    world = SlowReadWorld(Clock())
    runtime = Runtime(world, RuntimeOptions(poll_interval=0.01, lease_ttl=TTL))
    previous = use_runtime(runtime)
    try:
        _worlds[:] = [world]
        yield world
    finally:
        use_runtime(previous)
        runtime.stop()


_worlds: list[SlowReadWorld] = []


@durable.step(name="lease_checks.work")
def work(i: int) -> int:
    executed[f"step {i}"] += 1
    if i == 1 and executed["step 1"] == 1:
        time.sleep(1.1)  # long enough that the engine asks the world about the run before 2
        _worlds[0].stall = durable.step_info().run_id
    return i


@durable.workflow(name="lease_checks.two")
def two() -> list[int]:
    # Branches of a map: the second step's start writes nothing first (the first step's
    # result is not what it depends on), so it asks the world about the run after the quiet.
    return list(durable.map(work, [1, 2], max_concurrency=1))


def test_a_step_does_not_start_after_a_read_that_outlasted_the_lease(slow):
    run = two.start()
    deadline = time.monotonic() + 10
    while slow.get_run(run.id).lease_owner != "thief":
        assert time.monotonic() < deadline, "the world was never asked about the run"
        threading.Event().wait(0.01)
    threading.Event().wait(0.3)  # this worker would have started the second step by now
    assert executed["step 2"] == 0
    slow.release(run.id, "thief")
    assert run.result(timeout=10) == [1, 2]
    assert executed["step 2"] == 1
    assert executed["step 1"] <= 2  # in flight when the lease was lost: at most once more
