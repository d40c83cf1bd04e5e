"""Reconstruct what a run did, step by step, from its event log.

The log records when each operation *finished* (a step completed, failed or is retrying; a sleep
started), not when it began. A step begins when everything before it in program order has
finished: the previous operations of its branch, and whatever came before the ``parallel``/``map``
group that contains the branch. Its start is therefore the latest end among those predecessors
(a sleep ends at its ``wake_at``), or the run's creation. The nodes of a DAG run each run in a
branch of their own, and a node's branch begins only once the branches of its dependencies have
ended (:func:`cli._dag_spec.branch_dependencies`). Values from ``now()``/``random()`` are
flushed with the next write, so their times say nothing about when they were taken and are left
out. Durations include any time the run waited for a worker (after being started with no worker,
or after a worker died).
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cli._dag_spec import branch_dependencies
from cli._values import JsonValue, decode
from durable._serialization import json_object
from durable.world import FINISHED_STATUSES, Event, RunRecord

__all__ = ["Attempt", "Operation", "Timeline", "build_timeline", "op_key"]

_STEP_KINDS = frozenset({"step_completed", "step_failed", "step_retrying"})
_RUN_ENDS = frozenset({"run_completed", "run_failed", "run_cancelled"})


@dataclass
class Attempt:
    """One attempt of a step."""

    number: int
    """1 for the first attempt."""
    started_at: float
    """Epoch seconds (estimated, see the module docstring)."""
    finished_at: float
    """Epoch seconds the attempt's outcome was recorded."""
    error: dict[str, str] | None = None
    """``type`` and ``message`` of the attempt's exception, if it raised one."""
    retry_at: float | None = None
    """When the next attempt was due, if one was scheduled."""
    seq: int = 0
    """The sequence number of the event that recorded the attempt's outcome."""


@dataclass
class Operation:
    """One durable operation of a run: a step, a sleep or a recorded value."""

    op_id: str
    """The operation's position (``"3"``, ``"4.1.2"``)."""
    kind: str
    """``"step"``, ``"sleep"``, ``"value"``, or for other events their kind's prefix
    (``"hook"`` for ``hook_created``)."""
    name: str
    """The step's name, ``"sleep"``/``"sleep_until"``, or ``"now"``/``"random"``/``"uuid4"``."""
    status: str
    """``completed``, ``failed``, ``retrying``, ``sleeping``, ``due`` (a sleep whose time came
    while no worker has woken the run yet), ``recorded``, ``waiting``, ``interrupted``; for a
    hook also ``timed out`` or ``disposed`` (without a payload); for a child run
    ``completed``, ``failed`` or ``cancelled`` as the child ended."""
    started_at: float
    """Epoch seconds the operation began (estimated for steps)."""
    finished_at: float | None
    """Epoch seconds it ended (for a sleep, when it is due); ``None`` while it goes on."""
    first_seq: int
    """The sequence number of its first event."""
    attempts: list[Attempt] = field(default_factory=list)
    """For steps: every attempt, in order."""
    error: dict[str, str] | None = None
    """For failed steps: the final ``type`` and ``message``."""
    wake_at: float | None = None
    """For sleeps: when the run wakes."""
    value: JsonValue = None
    """For recorded values (and step results): the value as plain JSON."""
    traceback: str = ""
    """For failed steps: the traceback recorded with the final error, if any."""
    child_run_id: str | None = None
    """For child runs: the child's run id."""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while the operation goes on."""
        if self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)


@dataclass
class Timeline:
    """A run's operations in program order, with the run's own start and end."""

    started_at: float
    """When the run was created."""
    finished_at: float | None
    """When the run completed, failed or was cancelled; ``None`` if it has not."""
    operations: list[Operation]
    """In program order (parallel branches in branch order)."""

    @property
    def end(self) -> float:
        """The last moment the timeline covers (the run's end, or its latest known time)."""
        if self.finished_at is not None:
            return self.finished_at
        times = [self.started_at]
        for op in self.operations:
            times.append(op.started_at)
            if op.finished_at is not None:
                times.append(op.finished_at)
        return max(times)


def op_key(op_id: str) -> tuple[int, ...]:
    """Sort key putting operation ids in program order (``"2" < "4.1.1" < "4.2.1" < "10"``)."""
    try:
        return tuple(int(part) for part in op_id.split(".") if part)
    except ValueError:
        return ()


def build_timeline(
    record: RunRecord,
    events: list[Event],
    now: float,
    branches: Mapping[str, Sequence[str]] | None = None,
) -> Timeline:
    """Group a run's events into operations and estimate when each began and ended.

    Args:
        record: the run as stored now.
        events: its whole log, oldest first.
        now: the world's current time (decides whether a sleep is still going on).
        branches: branches of a graph (an operation-id prefix such as ``"1.3."``) and the
            branches each waited for before it began; by default a DAG run's nodes
            (:func:`cli._dag_spec.branch_dependencies`), none for other runs.

    Returns:
        The run's timeline.
    """
    started = next((e.created_at for e in events if e.kind == "run_created"), record.created_at)
    # The last end: a retried run's log has the failure it was retried after.
    ends = [e.created_at for e in events if e.kind in _RUN_ENDS]
    finished = ends[-1] if ends and record.status in FINISHED_STATUSES else None
    if finished is None and record.status in FINISHED_STATUSES:
        finished = record.updated_at
    by_op: dict[str, list[Event]] = defaultdict(list)
    retried_at: dict[str, float] = {}
    for event in events:
        if event.op_id is not None:
            by_op[event.op_id].append(event)
        elif event.kind == "run_retried":
            for op_id in _retried_steps(event):
                by_op.pop(op_id, None)  # the step runs again: its earlier attempts are history
                retried_at[op_id] = event.created_at
    graph = branch_dependencies(record) if branches is None else branches
    keys = {op_id: op_key(op_id) for op_id in by_op}
    starts = _start_times(by_op, keys, started, _branch_starts(by_op, graph))
    for op_id, at in retried_at.items():
        if op_id in starts:  # began again only once the run was retried
            starts[op_id] = max(starts[op_id], min(at, by_op[op_id][0].created_at))
    run_over = record.status in FINISHED_STATUSES
    operations = [
        _operation(op_id, by_op[op_id], starts[op_id], run_over, finished, now)
        for op_id in sorted(by_op, key=keys.__getitem__)
    ]
    last_seq = events[-1].seq if events else 0
    for op in operations:
        if (
            op.kind == "sleep" and op.status == "completed" and record.status == "suspended"
            and op.first_seq == last_seq
        ):
            # Its time came, but the run has recorded nothing since: no worker woke it yet.
            op.status = "due"
    return Timeline(started, finished, operations)


def _retried_steps(event: Event) -> list[str]:
    steps = json_object(event.data).get("steps", [])
    return [s for s in steps if isinstance(s, str)] if isinstance(steps, list) else []


def _end_of(events: list[Event], early: bool = False) -> float | None:
    """When an operation ended, as far as its successors are concerned.

    ``early``: a hook counts as ended once created (the run may do more before it waits).
    """
    if early and events[0].kind == "hook_created":
        return events[0].created_at
    last = events[-1]
    if last.kind in _STEP_KINDS:
        return last.created_at
    if last.kind == "sleep_started":
        wake_at = _wake_at(last)
        return max(last.created_at, wake_at) if wake_at is not None else last.created_at
    if last.kind == "value_recorded":
        return None
    return last.created_at


def _start_times(
    by_op: dict[str, list[Event]],
    keys: Mapping[str, tuple[int, ...]],
    run_start: float,
    floors: Mapping[str, float],
) -> dict[str, float]:
    # An operation after a hook began once the payload came (create, then wait at once) or,
    # when it ended before that, once the hook was created (create, do this, then wait).
    late = _latest_ends_before(by_op, keys, run_start, early=False)
    hooks = any(events[0].kind == "hook_created" for events in by_op.values())
    early = _latest_ends_before(by_op, keys, run_start, early=True) if hooks else late
    starts: dict[str, float] = {}
    for op_id, events in by_op.items():
        first = events[0].created_at
        floor = _floor(op_id, floors)
        latest, earliest = max(late[op_id], floor), max(early[op_id], floor)
        starts[op_id] = latest if latest <= first else min(earliest, first)
    return starts


def _floor(op_id: str, floors: Mapping[str, float]) -> float:
    """When the graph branch holding the operation began (``-inf`` outside every branch)."""
    branch = _branch_of(op_id, floors)
    return float("-inf") if branch is None else floors[branch]


def _branch_of(op_id: str, branches: Mapping[str, object]) -> str | None:
    """The innermost branch prefix (a key of ``branches``) the operation lies under."""
    if not branches:
        return None
    parts = op_id.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:depth]) + "."
        if prefix in branches:
            return prefix
    return None


def _branch_starts(
    by_op: dict[str, list[Event]], branches: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """When each graph branch began: once every branch it waited for had ended.

    A branch without events (a skipped node) ends as soon as it may begin.
    """
    if not branches:
        return {}
    ends: dict[str, float] = {}
    for op_id, events in by_op.items():
        op_end = _end_of(events)
        prefix = _branch_of(op_id, branches)
        if op_end is not None and prefix is not None:
            ends[prefix] = max(ends.get(prefix, op_end), op_end)
    starts: dict[str, float] = {}

    def start(prefix: str, trail: frozenset[str]) -> float:
        if prefix not in starts:
            waits = [p for p in branches.get(prefix, ()) if p not in trail]
            inner = trail | {prefix}
            starts[prefix] = max((end(p, inner) for p in waits), default=float("-inf"))
        return starts[prefix]

    def end(prefix: str, trail: frozenset[str]) -> float:
        return max(start(prefix, trail), ends.get(prefix, float("-inf")))

    for prefix in branches:
        start(prefix, frozenset())
    return starts


def _latest_ends_before(
    by_op: dict[str, list[Event]],
    keys: Mapping[str, tuple[int, ...]],
    run_start: float,
    early: bool,
) -> dict[str, float]:
    # For a branch path B (the counters and branch indexes leading to it) and a counter c in it,
    # the predecessors of an operation at (B, c) are every operation under (B, c') with c' < c.
    # Bucket each operation's end under every level of its path, then take prefix maxima, so
    # each start costs O(depth * log n) instead of a scan over all operations.
    buckets: dict[tuple[int, ...], dict[int, float]] = defaultdict(dict)
    for op_id, events in by_op.items():
        end = _end_of(events, early)
        if end is None:
            continue
        key = keys[op_id]
        for level in range(0, len(key), 2):
            bucket = buckets[key[:level]]
            bucket[key[level]] = max(bucket.get(key[level], end), end)
    prefix: dict[tuple[int, ...], tuple[list[int], list[float]]] = {}
    for path, bucket in buckets.items():
        counters = sorted(bucket)
        maxima: list[float] = []
        for counter in counters:
            maxima.append(max(maxima[-1], bucket[counter]) if maxima else bucket[counter])
        prefix[path] = (counters, maxima)
    starts: dict[str, float] = {}
    for op_id in by_op:
        key = keys[op_id]
        start = run_start
        for level in range(0, len(key), 2):
            found = prefix.get(key[:level])
            if found is None:
                continue
            counters, maxima = found
            index = bisect.bisect_left(counters, key[level])
            if index:
                start = max(start, maxima[index - 1])
        starts[op_id] = start
    return starts


def _operation(
    op_id: str,
    events: list[Event],
    start: float,
    run_over: bool,
    run_end: float | None,
    now: float,
) -> Operation:
    first = events[0]
    name = first.name or "?"
    if first.kind in _STEP_KINDS:
        return _step(op_id, name, events, start, run_over)
    if first.kind == "sleep_started":
        wake_at = _wake_at(first)
        status = "completed"
        end = wake_at
        if wake_at is not None and run_end is not None and run_end < wake_at:
            status, end = "interrupted", run_end
        elif wake_at is not None and wake_at > now and not run_over:
            status = "sleeping"
        return Operation(
            op_id, "sleep", name, status, first.created_at, end, first.seq, wake_at=wake_at
        )
    if first.kind == "value_recorded":
        value, _ = decode(first.data)
        return Operation(
            op_id, "value", name, "recorded", first.created_at, first.created_at, first.seq,
            value=value,
        )
    # Operations this module does not know yet (e.g. ``hook_created`` then ``hook_resumed``):
    # the kind's prefix names the family, the last event's suffix its state.
    family, _, _ = first.kind.partition("_")
    if first.kind == "hook_created":  # named by its token, which is what resumes it
        name = str(_json(first.data).get("token") or name)
    state = _ended_state(family, events)
    waiting = state in ("created", "started") and not run_over
    if state in ("created", "started") and run_over:
        state = "interrupted"  # the run ended (cancelled, failed) while it waited
    child = _json(first.data).get("run_id") if first.kind == "child_started" else None
    return Operation(
        op_id,
        family,
        name,
        "waiting" if waiting else state,
        first.created_at,
        None if waiting else events[-1].created_at,
        first.seq,
        child_run_id=child if isinstance(child, str) else None,
    )


def _ended_state(family: str, events: list[Event]) -> str:
    """The state of a hook, a child run or an operation of a kind not known here."""
    last = events[-1]
    if family == "child" and last.kind == "hook_received":
        # The engine waits for a child through a hook; its payload says how the child ended.
        ended = _json(last.data).get("status")
        return ended if isinstance(ended, str) and ended else "completed"
    if family == "hook":
        if any(e.kind == "hook_received" for e in events):
            return "completed"  # whether or not the workflow disposed of it afterwards
        if last.kind == "hook_timed_out":
            return "timed out"
    return last.kind.partition("_")[2] or last.kind


def _step(op_id: str, name: str, events: list[Event], start: float, run_over: bool) -> Operation:
    attempts: list[Attempt] = []
    attempt_start = start
    final: Event | None = None
    for event in events:
        info = _json(event.data) if event.kind != "step_completed" else {}
        error = _error(info) if event.kind != "step_completed" else None
        attempt = Attempt(
            len(attempts) + 1,
            min(attempt_start, event.created_at),
            event.created_at,
            error,
            seq=event.seq,
        )
        attempts.append(attempt)
        if event.kind == "step_retrying":
            retry_at = info.get("retry_at")
            attempt.retry_at = float(retry_at) if isinstance(retry_at, (int, float)) else None
            attempt_start = attempt.retry_at if attempt.retry_at is not None else event.created_at
        else:
            final = event
            break
    op = Operation(op_id, "step", name, "retrying", start, None, events[0].seq, attempts)
    if final is None:
        op.status = "interrupted" if run_over else "retrying"
        op.error = attempts[-1].error
        op.traceback = str(_json(events[len(attempts) - 1].data).get("traceback") or "")
        if run_over:
            op.finished_at = attempts[-1].finished_at
        return op
    op.finished_at = final.created_at
    if final.kind == "step_completed":
        op.status = "completed"
        op.value, _ = decode(final.data)
    else:
        op.status = "failed"
        op.error = attempts[-1].error
        op.traceback = str(_json(final.data).get("traceback") or "")
    return op


def _json(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(info: dict[str, Any]) -> dict[str, str]:
    return {"type": str(info.get("type", "Exception")), "message": str(info.get("message", ""))}


def _wake_at(event: Event) -> float | None:
    wake_at = _json(event.data).get("wake_at")
    return float(wake_at) if isinstance(wake_at, (int, float)) else None
