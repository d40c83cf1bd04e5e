"""SIGKILL a worker while a cancelled run compensates; a fresh worker takes it over only after
the wait that the cancel cut short would have ended anyway (its hook timed out, its sleep is
over). The replay must stop where the killed worker stopped, and run the undo steps left.

The workflows live in this module: the workers run
``durable worker tests.system.test_cancel_crash``.
Every undo attempt appends ``"undo {tag} {pid}"`` to the file named by CANCEL_CRASH_EFFECTS; the
undo of ``r1`` then waits until the file named by CANCEL_CRASH_GATE exists.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until

MODULE = "tests.system.test_cancel_crash"
WORKER_OPTIONS = ("--lease-ttl", "2", "--poll-interval", "0.05")


@durable.step(name="cc_do")
def do(tag: str) -> str:
    return tag


@durable.step(name="cc_undo")
def undo(tag: str) -> str:
    with open(os.environ["CANCEL_CRASH_EFFECTS"], "a", encoding="utf-8") as file:
        file.write(f"undo {tag} {os.getpid()}\n")
    gate = os.environ["CANCEL_CRASH_GATE"]
    deadline = time.monotonic() + 30
    while tag == "r1" and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return tag


def _booking(wait: str) -> str:
    with durable.Saga() as saga:
        for k in range(3):
            do(f"r{k}")
            saga.add(undo, f"r{k}")
        if wait == "hook":
            try:
                durable.create_hook(timeout="6s").wait()
            except durable.HookTimeout:
                pass  # the booking goes ahead unconfirmed
        else:
            durable.sleep("6s")  # longer than an in-process wait: the run suspends
        do("final")
    return "booked"


@durable.workflow(name="cc_booking_hook")
def booking_on_a_hook() -> str:
    return _booking("hook")


@durable.workflow(name="cc_booking_sleep")
def booking_asleep() -> str:
    return _booking("sleep")


def _undone(path: Path) -> list[tuple[str, int]]:
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(tag, int(pid)) for _, tag, pid in rows]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workflow", [booking_on_a_hook, booking_asleep], ids=["hook", "sleep"])
def test_a_crash_while_a_cancelled_run_compensates_loses_no_undo(
    tmp_path: Path, procs: Procs, workflow
):
    url = sqlite_url(tmp_path / "cancel.db")
    effects, gate = tmp_path / "effects.txt", tmp_path / "gate"
    env = env_for(url, CANCEL_CRASH_EFFECTS=str(effects), CANCEL_CRASH_GATE=str(gate))
    with local_durable(url) as runtime:
        world = runtime.world
        run = workflow.with_options(execute=False).start()
        victim = procs.worker([MODULE], env, *WORKER_OPTIONS)
        wait_until(lambda: world.get_run(run.id).status == "suspended", 30, "the run to wait")
        waits_from = time.monotonic()
        run.cancel()
        wait_until(lambda: ("r1", victim.pid) in _undone(effects), 30, "the undo of r1 to start")
        victim.kill()  # mid-compensation: r2 undone, r1 in flight, r0 not started
        assert _undone(effects) == [("r2", victim.pid), ("r1", victim.pid)]

        time.sleep(max(0.0, 6.5 - (time.monotonic() - waits_from)))  # the wait is over now
        gate.touch()
        rescuer = procs.worker([MODULE], env, *WORKER_OPTIONS)
        wait_until(lambda: world.get_run(run.id).status == "cancelled", 30, "the run to end")
        assert rescuer.stop() == 0, rescuer.stderr.text
        assert "Traceback" not in rescuer.stderr.text + victim.stderr.text

        # Every undo ran; only the one in flight at the kill ran twice.
        assert _undone(effects) == [
            ("r2", victim.pid), ("r1", victim.pid), ("r1", rescuer.pid), ("r0", rescuer.pid)
        ]
        events = world.read_events(run.id)
        steps = Counter(e.name for e in events if e.kind == "step_completed")
        assert steps == {"cc_do": 3, "cc_undo": 3}, steps
        assert not any(e.kind == "hook_timed_out" for e in events)
        with pytest.raises(durable.WorkflowCancelled):
            durable.get_run(run.id).result(timeout=5)
