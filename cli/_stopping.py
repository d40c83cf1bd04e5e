"""Stopping on Ctrl-C: gracefully on the first, at once on the second.

Shared by the commands that execute runs (``worker``, ``dev``, ``start --wait``). The first
SIGINT or SIGTERM asks the command to stop at the runs' next durable point (the steps in flight
finish and are recorded first). A second Ctrl-C ends the process at once: its leases then lapse
and another worker takes the runs over, running only the steps that were in flight again.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from durable._errors import DurableError
from durable._runtime import Runtime
from durable._steps import _run_sync

__all__ = [
    "INTERRUPTED",
    "describe_runs",
    "exit_at_once",
    "runs_in_progress",
    "steps_in_flight",
    "stop_on_signals",
    "stopping_line",
    "taken_over",
]

INTERRUPTED = 130
"""Exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it."""

_RUN_SYNC = _run_sync.__code__


@contextmanager
def stop_on_signals(
    stop: Callable[[], None], at_once: Callable[[], None]
) -> Iterator[threading.Event]:
    """While inside, SIGINT and SIGTERM call ``stop``; a later SIGINT calls ``at_once``.

    Yields the event that the first signal sets; the command sets it too when it starts
    stopping on its own (a timeout, a failed worker), so that Ctrl-C then stops at once.
    ``at_once`` runs inside the signal handler, so it must not use the world (the interrupted
    code may hold its locks): it prints what it already knows and ends the process.
    SIGTERM stays graceful however often it comes (a supervisor sends it before SIGKILL).
    """
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stopping.is_set():
            at_once()
        stopping.set()
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_at_once(message: str) -> None:
    """Print ``message`` on stderr and end the process now, with status 130.

    ``os._exit``: a normal exit would join the threads still running steps (thread pools are
    joined as the interpreter exits), which is what the second Ctrl-C is meant to skip.
    """
    try:
        sys.stdout.flush()
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    finally:
        os._exit(INTERRUPTED)


def steps_in_flight() -> dict[str, list[str]]:
    """The steps that threads of this process are running, by run id.

    Which step a thread runs is only on its stack (the engine keeps no list of them), so this
    reads the stacks, as a debugger would; only for messages. Steps of ``async def`` workflows
    do not show up.
    """
    found: dict[str, list[str]] = {}
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            if frame.f_code is _RUN_SYNC:
                ctx, step = frame.f_locals.get("ctx"), frame.f_locals.get("step")
                run_id, name = getattr(ctx, "run_id", None), getattr(step, "name", None)
                if isinstance(run_id, str) and isinstance(name, str):
                    found.setdefault(run_id, []).append(name)
            frame = frame.f_back
    return found


def describe_runs(runs: dict[str, str]) -> str:
    """``wrun_1 (long_job, step 'slow' x32), wrun_2 (quick)`` for runs by id and workflow name."""
    steps = steps_in_flight()
    parts = []
    named = dict(list(runs.items())[:_RUNS_NAMED])
    for run_id, workflow in named.items():
        counted = Counter(steps.get(run_id, []))
        shown = [f"{name!r}" + (f" x{n}" if n > 1 else "") for name, n in counted.items()]
        doing = f", {'steps' if len(counted) > 1 else 'step'} {', '.join(shown)}" if shown else ""
        parts.append(f"{run_id} ({workflow}{doing})")
    if len(runs) > len(named):
        parts.append(f"and {len(runs) - len(named)} more (durable runs --status running)")
    return ", ".join(parts)


_RUNS_NAMED = 10
"""The most runs a stopping worker names on its line (a worker may hold a hundred)."""


def runs_in_progress(runtime: Runtime) -> dict[str, str]:
    """The runs this process executes now (by id, with their workflow's name).

    Read from the world: the runs leased to this process are the ones it executes.
    """
    world = runtime.world
    try:
        running = world.count_runs().get("running", 0)
        records = world.list_runs(status="running", limit=running) if running else []
    except DurableError:
        return {}
    return {r.id: r.workflow_name for r in records if r.lease_owner == runtime.owner}


def stopping_line(runs: dict[str, str]) -> str:
    """What a worker says on the first Ctrl-C: which runs (and steps) it waits for."""
    if not runs:
        return "stopping: no run in progress here"
    noun = "run" if len(runs) == 1 else "runs"
    return (
        f"stopping: waiting for {len(runs)} {noun} in progress to reach a durable point: "
        f"{describe_runs(runs)} (Ctrl-C again to stop at once)"
    )


def taken_over(runs: dict[str, str]) -> str:
    """What the second Ctrl-C says: the runs left mid-step and what becomes of them."""
    if not runs:
        return "stopped at once (second Ctrl-C)"
    noun, them, leases = ("run", "it", "its lease lapses") if len(runs) == 1 else (
        "runs", "them", "their leases lapse"
    )
    return (
        f"stopped at once (second Ctrl-C), leaving {len(runs)} {noun} mid-step: "
        f"{describe_runs(runs)}; another worker takes {them} over when {leases}, running again "
        "only the steps that were in flight"
    )
