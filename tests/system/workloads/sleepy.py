"""A workflow that records a step, then sleeps for a duration given as its input."""

from __future__ import annotations

import durable


@durable.step(name="before_sleep")
def before_sleep(label: str) -> str:
    return f"{label} done"


@durable.workflow(name="sleepy")
def sleepy(duration: object) -> str:
    before_sleep("first")
    durable.sleep(duration)
    return "slept"
