"""Renderings for people: run lists, a run's steps and timeline, event logs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cli._chart import OPERATIONS_SHOWN, timeline_chart
from cli._dag_spec import dag_input, dag_name
from cli._grid import Cell, Column, Grid, Note, Row
from cli._timeline import Operation, Timeline
from cli._values import (
    compact,
    decode,
    error_info,
    format_ago,
    format_duration,
    format_local,
    format_when,
)
from cli._waits import Wait, open_waits, worker_wait
from durable._cancellation import deadline_passed, undo_failed
from durable._deadlines import arguments_only, deadline_of
from durable._engine import CANCEL_NOTICED, PATCH_MARKER
from durable._serialization import json_object
from durable.world import RUN_STATUSES, Event, RunRecord, World, owner_is_dead

__all__ = [
    "OPERATIONS_SHOWN",
    "STATUS_STYLES",
    "describe_event",
    "events_table",
    "format_size",
    "operations_table",
    "run_header",
    "run_waits",
    "runs_table",
    "timeline_chart",
    "world_table",
]

_T = TypeVar("_T")

STATUS_STYLES: dict[str, str] = {
    "pending": "cyan",
    "running": "bold blue",
    "suspended": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "retrying": "yellow",
    "sleeping": "magenta",
    "due": "magenta",
    "interrupted": "yellow",
    "recorded": "dim",
    "waiting": "magenta",
    "timed out": "yellow",
    "disposed": "dim",
}


_ERROR_CHARS = 80
"""Characters of each error in a table's note or detail (``inspect`` shows the run's whole)."""


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _offset(t: float, t0: float) -> str:
    return "+" + format_duration(t - t0) if t >= t0 else "-" + format_duration(t0 - t)


def _error_text(error: dict[str, str] | None, limit: int = _ERROR_CHARS) -> str:
    if error is None:
        return ""
    return compact(f"{error['type']}: {error['message']}", limit)


def _run_note(record: RunRecord, now: float, waits: Sequence[Wait]) -> str:
    notes: list[str] = []
    if record.status == "failed":
        notes.append(_error_text(error_info(record.error)))
    elif record.status == "cancelled":
        if deadline_passed(record.error) is not None:
            notes.append("timed out")
        if undo_failed(record.error):
            notes.append("undo steps failed")
    elif record.status == "suspended":
        notes.append(_waiting_note(record, now, waits))
    elif record.status == "pending":
        waiting = worker_wait(record, now)
        notes.append(waiting[0] if waiting else "waiting for a worker")
    elif record.status == "running" and record.lease_owner:
        notes.append(_lease_note(record, now))
    if record.cancel_requested and record.status not in ("cancelled", "completed", "failed"):
        notes.append("cancel requested")
    return "; ".join(n for n in notes if n)


def _lease_note(record: RunRecord, now: float) -> str:
    owner = record.lease_owner
    if record.lease_expires_at is not None and record.lease_expires_at < now:
        ago = format_ago(record.lease_expires_at, now)
        return f"lease of {owner} lapsed {ago}: a worker takes it over"
    if owner_is_dead(owner):
        return f"{owner} has exited: a worker on this host takes it over at once"
    if record.lease_expires_at is None:
        return f"on {owner}"
    left = format_duration(record.lease_expires_at - now)
    return f"on {owner} (its lease lapses in {left} unless renewed)"


def _waiting_note(record: RunRecord, now: float, waits: Sequence[Wait]) -> str:
    """What a suspended run waits for now: a worker once due, else its latest open wait."""
    wake = record.wake_at
    # Due, it waits on nothing but a worker: a payload or a child's end came, or a time passed.
    waiting = worker_wait(record, now)
    if wake is not None and waiting is not None:
        return f"due {format_ago(wake, now)}: {waiting[0]}"
    # A hook that had its payload yields to a wait still unanswered (gather over two hooks).
    latest = next((w for w in waits if not w.received), waits[0] if waits else None)
    if latest is None or latest.kind == "timer":
        return "waiting for an event" if wake is None else f"wakes {format_ago(wake, now)}"
    # A hook that had its payload is only counted when it is the latest wait (a stream's next).
    others = sum(1 for w in waits if w is not latest and w.kind != "timer" and not w.received)
    more = f" (and {others} more wait{'s' if others > 1 else ''})" if others else ""
    if latest.kind == "child":
        return f"waiting for child run {latest.name}{more}"
    timeout = latest.until
    until = f", times out {format_ago(timeout, now)}" if timeout is not None else ""
    return f"waiting for hook {latest.name}{more}{until}"


def run_waits(world: World, records: Sequence[RunRecord]) -> dict[str, list[Wait]]:
    """The open waits of each suspended run, latest first (for :func:`runs_table`)."""
    return {
        r.id: open_waits(r, world.read_events(r.id)) for r in records if r.status == "suspended"
    }


def runs_table(
    records: Sequence[RunRecord],
    now: float,
    waits: Mapping[str, Sequence[Wait]] | None = None,
) -> Grid:
    """Runs, one per row, newest first.

    Run ids and statuses are always whole. When the terminal is too narrow, the update time
    goes first, then the creation date; notes move under their rows; then the creation time
    goes and the workflow name wraps (and goes last). Notes wrap rather than being cut.

    Args:
        records: the runs.
        now: the world's current time.
        waits: open waits by run id (:func:`run_waits`), to say what suspended runs wait for.
    """
    columns = [
        Column("RUN ID"),
        Column("WORKFLOW", wrap=True, min_width=8, fold=5, drop=6),
        Column("STATUS"),
        Column("CREATED", drop=2),
        Column("UPDATED", drop=1),
        Column("CREATED", drop=4, instead_of=3),  # the time of day, for runs created today
        Column("NOTE", wrap=True, min_width=24, below=3),
    ]
    rows: list[Sequence[Cell]] = [
        [
            r.id,
            _workflow_cell(r),
            _status(r.status),
            format_local(r.created_at),
            format_ago(r.updated_at, now),
            format_when(r.created_at, now),
            _run_note(r, now, (waits or {}).get(r.id, ())),
        ]
        for r in records
    ]
    return Grid(columns, rows)


def _workflow_cell(record: RunRecord) -> str:
    # DAG runs are all runs of one workflow: the spec's name tells them apart.
    name = dag_name(record)
    return f"{record.workflow_name}: {name}" if name else record.workflow_name


def _value_line(data: bytes | None) -> str:
    value, encoding = decode(data)
    if encoding is None:
        return "-"
    if encoding != "json":
        return f"<{encoding}, {len(data or b'')} bytes>"
    return compact(value, 200)


def run_header(record: RunRecord, timeline: Timeline, now: float) -> Grid:
    """The run's identity, status, timing, input and outcome, one field a line.

    A failed run's error is shown whole (wrapped), followed by its recorded traceback.
    """
    rows: list[list[Cell]] = [
        ["run", record.id],
        ["workflow", record.workflow_name],
        ["status", _status(record.status)],
    ]
    created = record.created_at
    rows.append(["created", f"{format_local(created)} ({format_ago(created, now)})"])
    if timeline.finished_at is not None:
        took = format_duration(timeline.finished_at - timeline.started_at)
        rows.append(["finished", f"{format_local(timeline.finished_at)} (took {took})"])
    if record.status == "suspended":
        rows.append(_wake_row(record, timeline, now))
    if record.lease_owner and record.status == "running":
        rows.append(["worker", _lease_note(record, now)])
    if record.cancel_requested and record.status != "cancelled":
        rows.append(["cancel", "requested"])
    if record.parent_id:
        rows.append(["parent", record.parent_id])
    rows += _input_rows(record)
    if record.status == "completed":
        rows.append(["result", _value_line(record.output)])
    error = error_info(record.error)
    if error is not None:
        message = f"{error['type']}: {error['message']}"
        rows.append(["error", Text(message, style="red")])
        traceback = error["traceback"] or _last_traceback(timeline)
        if traceback:
            shown = _without_message(traceback, error["message"])
            rows.append(["traceback", Text(shown, style="dim")])
    return Grid([Column(style="bold"), Column(wrap=True, min_width=20)], rows, header=False)


def _wake_row(record: RunRecord, timeline: Timeline, now: float) -> list[Cell]:
    waiting = [op for op in timeline.operations if op.status == "waiting"]
    child = next((op for op in waiting if op.kind == "child"), None)
    if child is not None:
        return ["waiting", f"for child run {child.child_run_id or child.name}"]
    wake = record.wake_at
    until = "" if wake is None else f", times out {format_local(wake)} ({format_ago(wake, now)})"
    hook = next((op for op in waiting if op.kind == "hook"), None)
    if hook is not None:
        return ["waiting", f"for hook {hook.name}{until}"]
    if wake is None:
        return ["wakes", "when an outside event arrives"]
    return ["wakes", f"{format_local(wake)} ({format_ago(wake, now)})"]


def _input_rows(record: RunRecord) -> list[list[Cell]]:
    deadline = deadline_of(record)
    limit: list[list[Cell]] = [] if deadline is None else [["deadline", format_local(deadline)]]
    dag = dag_input(record)
    if dag is None:
        return [["input", _value_line(arguments_only(record.input))], *limit]
    # A DAG run's arguments are its spec and its input: the spec is the file it was run from.
    spec, run_input = dag
    nodes = spec.get("nodes") if isinstance(spec, dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    count = f"{len(nodes)} nodes" if isinstance(nodes, list) else "unreadable"
    return [
        ["spec", f"{name} ({count})" if name else count],
        ["input", compact(json.dumps(run_input, ensure_ascii=False), 200)],
        *limit,
    ]


def _last_traceback(timeline: Timeline) -> str:
    failed = [op for op in timeline.operations if op.traceback and op.status == "failed"]
    return failed[-1].traceback if failed else ""


def _without_message(traceback: str, message: str) -> str:
    """The traceback, its last line not repeating a long message shown just above it."""
    traceback = traceback.rstrip("\n")
    if len(message) > 200 and traceback.endswith(message):
        return traceback[: len(traceback) - len(message)] + "(the error above)"
    return traceback


def _op_label(op: Operation) -> str:
    if op.kind == "step":
        return f"step {op.name}"
    if op.kind == "value":
        return f"{op.name}()"
    return op.name if op.kind == "sleep" else f"{op.kind} {op.name}"


def _op_detail(op: Operation) -> str:
    if op.kind == "sleep" and op.wake_at is not None:
        return f"until {format_local(op.wake_at)}"
    if op.kind == "value":
        return compact(op.value, 60)
    if op.kind == "child" and op.child_run_id:
        return f"run {op.child_run_id}"
    parts = _attempt_errors(op)
    if op.status == "retrying" and op.attempts and op.attempts[-1].retry_at is not None:
        parts.append(f"next attempt at {format_local(op.attempts[-1].retry_at)}")
    return "; ".join(parts)


def _attempt_errors(op: Operation) -> list[str]:
    """``#1–3 ConnectionError: reset``: each failed attempt, alike ones in a row together."""
    runs: list[tuple[int, int, str]] = []
    for attempt in op.attempts:
        if attempt.error is None:
            continue
        text = _error_text(attempt.error)
        if runs and runs[-1][2] == text and runs[-1][1] == attempt.number - 1:
            runs[-1] = (runs[-1][0], attempt.number, text)
        else:
            runs.append((attempt.number, attempt.number, text))
    return [
        f"#{first} {text}" if first == last else f"#{first}–{last} {text}"
        for first, last, text in runs
    ]


def _notable(op: Operation) -> bool:
    return op.status not in ("completed", "recorded") or len(op.attempts) > 1


def _elide(items: Sequence[_T], limit: int | None, notable: Callable[[_T], bool]) -> list[_T | int]:
    """The first and last ``limit / 2`` items, and notable ones between (as many at most).

    Each stretch left out is replaced by its length.
    """
    if limit is None or len(items) <= limit:
        return list(items)
    half = max(limit // 2, 1)
    middle = [i for i in range(half, len(items) - half) if notable(items[i])][:half]
    keep = sorted({*range(half), *range(len(items) - half, len(items)), *middle})
    out: list[_T | int] = []
    previous = -1
    for index in keep:
        if index > previous + 1:
            out.append(index - previous - 1)
        out.append(items[index])
        previous = index
    return out


def _more(count: int, what: str) -> Note:
    plural = what if count == 1 else what + "s"
    return Note(f"⋯ {count:,} more {plural} (--all shows every one)")


def operations_table(timeline: Timeline, limit: int | None = OPERATIONS_SHOWN) -> Grid:
    """The run's operations in program order: status, attempts, start, duration, errors.

    Args:
        timeline: the run's timeline.
        limit: past this many operations, only the first and last ``limit / 2`` are shown, with
            those between that failed, retried or are still going on; ``None`` shows all.
    """
    columns = [
        Column("OP", justify="right"),
        Column("OPERATION", wrap=True, min_width=10, fold=5),
        Column("STATUS"),
        Column("ATTEMPTS", justify="right", drop=2),
        Column("START", justify="right", drop=1),
        Column("DURATION", justify="right", drop=4),
        Column("DETAIL", wrap=True, min_width=24, below=3),
    ]
    t0 = timeline.started_at
    rows: list[Sequence[Cell] | Row | Note] = []
    for item in _elide(timeline.operations, limit, _notable):
        if isinstance(item, int):
            rows.append(_more(item, "operation"))
            continue
        op = item
        cells: list[Cell] = [
            op.op_id,
            _op_label(op),
            _status(op.status),
            str(len(op.attempts)) if op.kind == "step" else "",
            _offset(op.started_at, t0),
            format_duration(op.duration) if op.kind != "value" else "",
            Text(_op_detail(op), style="red" if op.status == "failed" else ""),
        ]
        rows.append(Row(cells, "dim" if op.kind == "value" else ""))
    return Grid(columns, rows)


def _cancelled_line(data: bytes | None) -> str:
    """What a run's end says of how it was cancelled: by its timeout, with undo steps failing."""
    if deadline_passed(data) is None and not undo_failed(data):
        return ""
    info = json.loads(data or b"{}")
    why = "timed out: " if deadline_passed(data) is not None else ""
    return compact(f"{why}{info.get('message', '')}", 160)


def describe_event(event: Event) -> str:
    """One line saying what an event means (its payload summarised)."""
    info: dict[str, Any] = {}
    if event.kind in ("step_failed", "step_retrying", "sleep_started", "run_failed"):
        info = json_object(event.data)
    error = f"{info.get('type', 'Exception')}: {info.get('message', '')}"
    if event.kind == "run_created":
        return f"run of {event.name} created" if event.name else "run created"
    if event.kind == "step_completed":
        return "returned " + _value_line(event.data)
    if event.kind == "step_retrying":
        retry_at = info.get("retry_at")
        when = (
            f"; retry in {format_duration(retry_at - event.created_at)}"
            if isinstance(retry_at, (int, float))
            else ""
        )
        return compact(f"attempt {info.get('attempt', '?')} failed: {error}", 100) + when
    if event.kind == "step_failed":
        attempts = info.get("attempts", "?")
        return compact(f"failed after {attempts} attempt(s): {error}", 120)
    if event.kind == "sleep_started":
        wake = info.get("wake_at")
        if isinstance(wake, (int, float)):
            return f"{format_duration(wake - event.created_at)}, until {format_local(wake)}"
        return "sleeping"
    if event.kind == "run_failed":
        return compact(error, 120)
    if event.kind == "value_recorded" and event.name == CANCEL_NOTICED:
        return "stops here: its cancellation was requested"
    if event.kind == "value_recorded" and (event.name or "").startswith(PATCH_MARKER):
        return "takes the patched code path here"
    describe = _DESCRIBED_BY_DATA.get(event.kind)
    if describe is not None:
        return describe(event.data)
    return _value_line(_local_times(event.data)) if event.data is not None else ""


def _retried_line(data: bytes | None) -> str:
    info = json.loads(data or b"{}")
    steps = info.get("steps") or []
    again = f"; step {', '.join(steps)} runs again" if steps else ""
    return compact(f"after {info.get('error', 'its failure')}{again}", 160)


def _hook_line(data: bytes | None) -> str:
    value, _ = decode(data)
    info = value if isinstance(value, dict) else {}
    timeout_at = info.get("timeout_at")
    until = (
        f"times out {format_local(timeout_at)}"
        if isinstance(timeout_at, (int, float))
        else "no timeout"
    )
    schema = f", payload {info['schema']}" if info.get("schema") else ""
    return f"token {info.get('token', '?')}, {until}{schema}"


def _local_times(data: bytes | None) -> bytes | None:
    # Events this module does not describe yet may hold epoch seconds under "*_at" keys; people
    # read them in the same format as every other time shown.
    try:
        value = json.loads(data or b"")
    except ValueError:
        return data
    if not isinstance(value, dict):
        return data
    for key, item in value.items():
        if key.endswith("_at") and isinstance(item, (int, float)) and not isinstance(item, bool):
            value[key] = format_local(item)
    return json.dumps(value, ensure_ascii=False).encode()


def events_table(events: Sequence[Event], t0: float) -> Grid:
    """A run's log: sequence number, time since creation, kind, operation and what it says."""
    columns = [
        Column("SEQ", justify="right"),
        Column("TIME", justify="right", drop=1),
        Column("KIND"),
        Column("OP"),
        Column("NAME", wrap=True, min_width=10, fold=3),
        Column("DETAIL", wrap=True, min_width=24, below=2),
    ]
    rows: list[Sequence[Cell]] = [
        [
            str(e.seq),
            _offset(e.created_at, t0),
            Text(e.kind, style="red") if e.kind in ("step_failed", "run_failed") else e.kind,
            e.op_id or "",
            e.name or "",
            describe_event(e),
        ]
        for e in events
    ]
    return Grid(columns, rows)


def world_table(
    url: str,
    path: str | None,
    size: int | None,
    counts: dict[str, int],
    location: dict[str, str] | None = None,
) -> RenderableType:
    """Which world, where it lives, and how many runs it holds by status."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("world", url)
    grid.add_row("backend", url.partition("://")[0])
    if path is not None:
        grid.add_row("path", path)
        grid.add_row("size", "-" if size is None else format_size(size))
    for key, value in (location or {}).items():
        grid.add_row(key.replace("_", " "), value)
    grid.add_row("runs", str(sum(counts.values())))
    by_status = Table(box=None, header_style="bold", pad_edge=False)
    by_status.add_column("STATUS")
    by_status.add_column("RUNS", justify="right")
    for status in (*RUN_STATUSES, *sorted(set(counts) - set(RUN_STATUSES))):
        by_status.add_row(_status(status), str(counts.get(status, 0)))
    return Group(grid, Text(""), by_status)


def format_size(size: int) -> str:
    """Bytes in binary units (``12.0 MiB``), as ``world info`` and ``gc --compact`` show them."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


_DESCRIBED_BY_DATA: dict[str, Callable[[bytes | None], str]] = {
    "value_recorded": _value_line,
    "run_completed": _cancelled_line,
    "run_cancelled": _cancelled_line,
    "hook_created": _hook_line,
    "run_retried": _retried_line,
}
