"""A multi-step workflow for ``test_aws_workers.py``, executed by ``durable worker`` processes.

Every step attempt appends ``"{pid} {run_id} {step_id}\\n"`` to the file named by
``WORKER_EFFECTS`` when it starts, then sleeps 80-150 ms (a deterministic function of the run
input and step index, so a re-execution takes as long as the first one).
"""

from __future__ import annotations

import os
import time

import durable

STEPS = 6


def _effect() -> None:
    info = durable.step_info()
    line = f"{os.getpid()} {info.run_id} {info.step_id}\n"
    fd = os.open(os.environ["WORKER_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _duration(n: int, index: int) -> float:
    return 0.08 + ((n * 7 + index * 13) % 8) * 0.01  # 80..150 ms


@durable.step(name="aw_work")
def work(n: int, index: int) -> str:
    _effect()
    time.sleep(_duration(n, index))
    return f"{n}.{index}"


@durable.workflow(name="aws_multistep")
def aws_multistep(n: int, steps: int = STEPS) -> list[str]:
    return [work(n, i) for i in range(steps)]


def expected(n: int, steps: int = STEPS) -> list[str]:
    return [f"{n}.{i}" for i in range(steps)]
