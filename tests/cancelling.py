"""Cancelling a run while one of its steps (or DAG handlers) is held mid-way."""

from __future__ import annotations

import threading
import time

from durable import Run
from durable._run import cancel_run
from durable.world import World

HOW = ["run.cancel", "elsewhere"]
"""``run.cancel()`` in this process, or a cancel request only the world learns of (as from
another process: the executing worker is not told)."""


def cancel_while_held(
    run: Run, world: World, how: str, entered: threading.Event, release: threading.Event
) -> None:
    """Cancel ``run`` once its held code has set ``entered``; then let it go on (``release``)."""
    try:
        assert entered.wait(10)
        if how == "run.cancel":
            run.cancel()
        else:
            assert cancel_run(world, run.id) == "requested"
    finally:
        release.set()


def wait_on_hook(run: Run, world: World, timeout: float = 10.0) -> None:
    """Wait until ``run`` is suspended on a hook (under forced replay it also suspends briefly
    at every step)."""
    deadline = time.monotonic() + timeout
    while run.status != "suspended" or not world.list_hooks(run.id):
        assert time.monotonic() < deadline, f"run {run.id} is {run.status}, not on a hook"
        time.sleep(0.01)


def wait_for_event(run: Run, kind: str, timeout: float = 10.0) -> None:
    """Wait until ``run`` has recorded an event of ``kind`` (``sleep_started``, ...)."""
    deadline = time.monotonic() + timeout
    while not any(e.kind == kind for e in run.events()):
        assert time.monotonic() < deadline, run.events()
        time.sleep(0.01)


def wait_asleep(run: Run, world: World, longer_than: float = 600.0, timeout: float = 10.0) -> None:
    """Wait until ``run`` is suspended in a sleep due more than ``longer_than`` seconds from now
    (under forced replay it also suspends for an instant at every step)."""
    deadline = time.monotonic() + timeout
    while True:
        record = world.get_run(run.id)
        assert record is not None
        if record.status == "suspended" and (record.wake_at or 0) > world.now() + longer_than:
            return
        assert time.monotonic() < deadline, f"run {run.id} is {record.status}, not asleep"
        time.sleep(0.01)
