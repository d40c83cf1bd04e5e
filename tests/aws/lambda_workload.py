"""Workflows for ``test_lambda_handler.py``, executed in-process by ``durable.aws`` handlers.

Every step attempt appends ``(run_id, step_id)`` to :data:`EFFECTS` when it starts, so a test
can tell how many times each step of a run really executed.
"""

from __future__ import annotations

import asyncio
import threading
import time

import durable

EFFECTS: list[tuple[str, str]] = []
"""``(run_id, step_id)`` of every step attempt, in the order they started."""
_lock = threading.Lock()


def _note() -> None:
    info = durable.step_info()
    with _lock:
        EFFECTS.append((info.run_id, info.step_id))


def attempts(run_id: str) -> list[str]:
    """Step ids of the attempts made for ``run_id``, in order."""
    with _lock:
        return [step for run, step in EFFECTS if run == run_id]


@durable.step(name="lw_add")
def add(n: int, index: int) -> int:
    _note()
    return n * 10 + index


@durable.step(name="lw_add_async")
async def add_async(n: int, index: int) -> int:
    _note()
    await asyncio.sleep(0.01)
    return n * 10 + index


@durable.step(name="lw_slow_step")
def slow_step(index: int, seconds: float) -> int:
    _note()
    time.sleep(seconds)
    return index


@durable.workflow(name="lw_sum")
def lw_sum(n: int, steps: int = 3) -> list[int]:
    return [add(n, i) for i in range(steps)]


@durable.workflow(name="lw_sum_async")
async def lw_sum_async(n: int, steps: int = 3) -> list[int]:
    return [await add_async(n, i) for i in range(steps)]


@durable.workflow(name="lw_slow")
def lw_slow(steps: int, seconds: float) -> list[int]:
    return [slow_step(i, seconds) for i in range(steps)]


@durable.workflow(name="lw_nap")
def lw_nap(duration: str) -> list[int]:
    before = add(0, 1)
    durable.sleep(duration)
    return [before, add(0, 2)]


@durable.step(retry=durable.RetryPolicy(max_attempts=1))
def tells(n: int) -> int:
    out = durable.stream("progress")
    for i in range(n):
        out.write(f"part {i}")
    return n


@durable.workflow(name="lw_streams")
def lw_streams(n: int) -> int:
    return tells(n)


@durable.workflow(name="lw_breaks")
def lw_breaks(order: str) -> int:
    raise ValueError(f"order {order} has no lines")
