"""A workflow whose first step waits for the test, so the test can lock the database meanwhile.

Every step attempt appends ``"{step_name} {pid}\\n"`` to the file named by ``SLOW_EFFECTS``;
``slow_step`` then waits (up to 30 s) until the file named by ``SLOW_GATE``, if set, exists.
"""

from __future__ import annotations

import os
import time

import durable
from tests.system.workloads._effects import effect


def _effect(name: str) -> None:
    effect(name, "SLOW_EFFECTS")


@durable.step(name="slow_step")
def slow_step(x: int) -> int:
    _effect("slow_step")
    gate = os.environ.get("SLOW_GATE")
    deadline = time.monotonic() + 30
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x + 1


@durable.step(name="quick_step")
def quick_step(x: int) -> int:
    _effect("quick_step")
    return x * 10


@durable.workflow(name="slow")
def slow(x: int) -> int:
    return quick_step(slow_step(x))
