"""What a suspended run waits on now, read from its log.

Its live hooks alone mislead: a hook stays live until the run disposes of it or ends, so a parent
whose child run finished, or a run that took a hook's payload and went on, still has those hooks
while it waits on something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from durable._serialization import json_object
from durable.world import Event, RunRecord

__all__ = ["Wait", "open_waits", "worker_wait"]

_WAKE_MATCH = 0.01
"""Seconds: a timer whose time is this close to the run's ``wake_at`` is what wakes it."""


WORKER_GRACE = 10.0
"""Seconds a run may wait for a worker before notes name the workflow that worker must have: a
running worker that knows it claims it well within that (it polls several times a second)."""


def worker_wait(record: RunRecord, now: float) -> tuple[str, float] | None:
    """What a run waits for when only a worker can move it on, and since when; else None.

    That is a pending run, or a suspended one whose wake-up is due. Which workflows the live
    workers have cannot be read from the world: past :data:`WORKER_GRACE` the note names the
    workflow, since a worker whose code lacks it (renamed or dropped by a deploy, a module not
    imported) leaves the run waiting however long it runs.
    """
    if record.status == "pending":
        since = record.updated_at
    elif record.status == "suspended" and record.wake_at is not None and record.wake_at <= now:
        since = record.wake_at
    else:
        return None
    if now - since < WORKER_GRACE:
        return "waiting for a worker", since
    return f"waiting for a worker that has workflow {record.workflow_name!r} registered", since


@dataclass(frozen=True)
class Wait:
    """Something a suspended run may be waiting on."""

    kind: Literal["child", "hook", "timer"]
    """A child run's end, a hook's payload, or the end of a sleep or of a retry's delay."""
    name: str
    """The child run's id, or the hook's token (``""`` for a timer)."""
    until: float | None
    """When a hook's wait times out, or a timer wakes the run."""
    received: bool = False
    """A hook that has had a payload: the run took it and may wait for the next, or be done."""


def open_waits(record: RunRecord, history: Sequence[Event]) -> list[Wait]:
    """The waits of a suspended run still open, the latest in its log (what it waits on now) first.

    A child run's wait ends with its outcome, a hook's when it is disposed of or times out, and a
    timer is open only while it is what wakes the run (``record.wake_at``).
    """
    waits: dict[str, Wait] = {}  # by op id, oldest first
    for event in history:
        op = event.op_id or ""
        wait = _started(event)
        if wait is not None:
            waits.pop(op, None)  # a retry again: the newest wait of all
            waits[op] = wait
        elif event.kind == "hook_received" and op in waits:
            if waits[op].kind == "child":  # the child run's outcome
                del waits[op]
            else:
                waits[op] = replace(waits[op], received=True)
        elif event.kind in ("hook_timed_out", "hook_disposed", "step_completed", "step_failed"):
            waits.pop(op, None)
    latest_first = reversed(waits.values())
    return [w for w in latest_first if w.kind != "timer" or _wakes(w.until, record.wake_at)]


_TIMER_FIELDS = {"sleep_started": "wake_at", "step_retrying": "retry_at"}


def _started(event: Event) -> Wait | None:
    """The wait an event begins, if it begins one (only those events' data is parsed)."""
    if event.kind == "child_started":
        return Wait("child", str(event_data(event).get("run_id", event.name or "?")), None)
    if event.kind == "hook_created":
        info = event_data(event)
        return Wait("hook", str(info.get("token", "?")), as_number(info.get("timeout_at")))
    field = _TIMER_FIELDS.get(event.kind)
    if field is not None:
        return Wait("timer", "", as_number(event_data(event).get(field)))
    return None


def _wakes(at: float | None, wake_at: float | None) -> bool:
    return at is not None and wake_at is not None and abs(at - wake_at) < _WAKE_MATCH


def event_data(event: Event) -> dict[str, Any]:
    return json_object(event.data)


def as_number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
