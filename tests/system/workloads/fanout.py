"""A workflow with three parallel steps and a fourth that combines them, for concurrency tests.

Every step attempt appends ``"{run_id} {step_id} {pid}\\n"`` to the file named by
``FANOUT_EFFECTS``.
"""

from __future__ import annotations

import os
import time

import durable


def _effect() -> None:
    info = durable.step_info()
    line = f"{info.run_id} {info.step_id} {os.getpid()}\n"
    fd = os.open(os.environ["FANOUT_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@durable.step(name="fanout_part")
def part(label: str, n: int) -> str:
    _effect()
    time.sleep(0.002)
    return f"{label}{n}"


@durable.step(name="fanout_combine")
def combine(parts: list[str]) -> str:
    _effect()
    return "+".join(parts)


@durable.workflow(name="fanout")
def fanout(n: int) -> str:
    parts = durable.parallel(
        lambda: part("a", n),
        lambda: part("b", n),
        lambda: part("c", n),
    )
    return combine(parts)


def expected(n: int) -> str:
    return f"a{n}+b{n}+c{n}"
