"""A workflow that runs slow code of its own between two steps, for a kill to land in.

Each step appends ``"{step_name} {pid}\\n"`` to the file named by ``BETWEEN_EFFECTS``. Between
the steps the workflow writes the file named by ``BETWEEN_MARK`` and, in the first process to
get there only, waits up to 60 s (the test kills that process meanwhile).
"""

from __future__ import annotations

import os
import time

import durable
from tests.system.workloads._effects import effect


def _effect(name: str) -> None:
    effect(name, "BETWEEN_EFFECTS")


@durable.step(name="charge_card")
def charge_card(order: str) -> str:
    _effect("charge_card")
    return f"charged {order}"


@durable.step(name="ship")
def ship(order: str) -> str:
    _effect("ship")
    return f"shipped {order}"


@durable.workflow(name="between")
def between(order: str) -> list[str]:
    charged = charge_card(order)
    mark = os.environ["BETWEEN_MARK"]
    if not os.path.exists(mark):  # not durable work: plain code of the workflow's own
        with open(mark, "w", encoding="utf-8") as file:
            file.write(str(os.getpid()))
        time.sleep(60)
    return [charged, ship(order)]
