"""Multi-step workflows (sync and async) whose steps take 50-100 ms, for the worker tests.

Every step attempt appends ``"{pid} {run_id} {step_id}\\n"`` to the file named by
``MULTISTEP_EFFECTS`` when it starts, then sleeps 50-100 ms (a deterministic function of the run
input and step index, so a re-execution takes as long as the first one).
"""

from __future__ import annotations

import asyncio
import os
import time

import durable

STEPS = 6


def _effect() -> None:
    info = durable.step_info()
    line = f"{os.getpid()} {info.run_id} {info.step_id}\n"
    fd = os.open(os.environ["MULTISTEP_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _duration(n: int, index: int) -> float:
    return 0.05 + ((n * 7 + index * 13) % 11) * 0.005  # 50..100 ms


@durable.step(name="ms_work")
def work(n: int, index: int) -> str:
    _effect()
    time.sleep(_duration(n, index))
    return f"{n}.{index}"


@durable.step(name="ms_work_async")
async def work_async(n: int, index: int) -> str:
    _effect()
    await asyncio.sleep(_duration(n, index))
    return f"{n}.{index}"


@durable.workflow(name="multistep")
def multistep(n: int, steps: int = STEPS) -> list[str]:
    return [work(n, i) for i in range(steps)]


@durable.workflow(name="multistep_async")
async def multistep_async(n: int, steps: int = STEPS) -> list[str]:
    return [await work_async(n, i) for i in range(steps)]


def expected(n: int, steps: int = STEPS) -> list[str]:
    return [f"{n}.{i}" for i in range(steps)]
