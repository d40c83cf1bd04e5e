"""Cancelling a run while one of its steps (or DAG handlers) is held mid-way."""

from __future__ import annotations

import threading

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
