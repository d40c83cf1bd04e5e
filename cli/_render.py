"""Rich renderings for people: run lists, a run's steps and timeline, event logs."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cli._timeline import Operation, Timeline
from cli._values import (
    compact,
    decode,
    error_info,
    format_ago,
    format_duration,
    format_local,
)
from durable.world import RUN_STATUSES, Event, RunRecord

__all__ = [
    "STATUS_STYLES",
    "describe_event",
    "events_table",
    "operations_table",
    "run_header",
    "runs_table",
    "timeline_chart",
    "world_table",
]

STATUS_STYLES: dict[str, str] = {
    "pending": "cyan",
    "running": "bold blue",
    "suspended": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "retrying": "yellow",
    "sleeping": "magenta",
    "interrupted": "yellow",
    "recorded": "dim",
    "waiting": "magenta",
}


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _offset(t: float, t0: float) -> str:
    return "+" + format_duration(t - t0) if t >= t0 else "-" + format_duration(t0 - t)


def _error_text(error: dict[str, str] | None, limit: int = 70) -> str:
    if error is None:
        return ""
    return compact(f"{error['type']}: {error['message']}", limit)


def _run_note(record: RunRecord, now: float) -> str:
    notes: list[str] = []
    if record.status == "failed":
        notes.append(_error_text(error_info(record.error), 60))
    elif record.status == "suspended":
        wake = record.wake_at
        notes.append("waiting for an event" if wake is None else f"wakes {format_ago(wake, now)}")
    elif record.status == "pending":
        notes.append("waiting for a worker")
    elif record.status == "running" and record.lease_owner:
        notes.append(f"on {record.lease_owner}")
    if record.cancel_requested and record.status not in ("cancelled", "completed", "failed"):
        notes.append("cancel requested")
    return "; ".join(n for n in notes if n)


def runs_table(records: list[RunRecord], now: float) -> Table:
    """Runs, one per row, newest first."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("RUN ID", no_wrap=True)
    table.add_column("WORKFLOW", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    table.add_column("NOTE")
    for r in records:
        table.add_row(
            r.id,
            r.workflow_name,
            _status(r.status),
            format_local(r.created_at),
            format_ago(r.updated_at, now),
            _run_note(r, now),
        )
    return table


def _value_line(data: bytes | None) -> str:
    value, encoding = decode(data)
    if encoding is None:
        return "-"
    if encoding != "json":
        return f"<{encoding}, {len(data or b'')} bytes>"
    return compact(value, 200)


def run_header(record: RunRecord, timeline: Timeline, now: float) -> Table:
    """The run's identity, status, timing, input and outcome as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("run", record.id)
    grid.add_row("workflow", record.workflow_name)
    grid.add_row("status", _status(record.status))
    created = record.created_at
    grid.add_row("created", f"{format_local(created)} ({format_ago(created, now)})")
    if timeline.finished_at is not None:
        took = format_duration(timeline.finished_at - timeline.started_at)
        grid.add_row("finished", f"{format_local(timeline.finished_at)} (took {took})")
    if record.status == "suspended":
        wake = record.wake_at
        grid.add_row(
            "wakes",
            "when an outside event arrives"
            if wake is None
            else f"{format_local(wake)} ({format_ago(wake, now)})",
        )
    if record.lease_owner and record.status == "running":
        grid.add_row("worker", record.lease_owner)
    if record.cancel_requested and record.status != "cancelled":
        grid.add_row("cancel", "requested")
    if record.parent_id:
        grid.add_row("parent", record.parent_id)
    grid.add_row("input", _value_line(record.input))
    if record.status == "completed":
        grid.add_row("result", _value_line(record.output))
    error = error_info(record.error)
    if error is not None:
        grid.add_row("error", Text(f"{error['type']}: {error['message']}", style="red"))
    return grid


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
    parts: list[str] = []
    for attempt in op.attempts:
        if attempt.error is not None and (attempt is not op.attempts[-1] or op.error is None):
            parts.append(f"#{attempt.number} {_error_text(attempt.error, 50)}")
    if op.status == "retrying" and op.attempts and op.attempts[-1].retry_at is not None:
        parts.append(f"next attempt at {format_local(op.attempts[-1].retry_at)}")
    if op.error is not None and op.status != "retrying":
        parts.append(_error_text(op.error))
    return "; ".join(parts)


def operations_table(timeline: Timeline) -> Table:
    """The run's operations in program order: status, attempts, start, duration, errors."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("OP", no_wrap=True, justify="right")
    table.add_column("OPERATION", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right", no_wrap=True)
    table.add_column("START", justify="right", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("DETAIL")
    t0 = timeline.started_at
    for op in timeline.operations:
        style = "dim" if op.kind == "value" else ""
        table.add_row(
            op.op_id,
            _op_label(op),
            _status(op.status),
            str(len(op.attempts)) if op.kind == "step" else "",
            _offset(op.started_at, t0),
            format_duration(op.duration) if op.kind != "value" else "",
            Text(_op_detail(op), style="red" if op.status == "failed" else ""),
            style=style,
        )
    return table


class _Bar:
    """One row of the timeline: characters placed on a scale from t0 to t1."""

    def __init__(self, width: int, t0: float, t1: float) -> None:
        self.width = width
        self.t0 = t0
        self.span = max(t1 - t0, 1e-9)
        self.cells: list[tuple[str, str]] = [(" ", "")] * width

    def _pos(self, t: float) -> int:
        return min(self.width - 1, max(0, int((t - self.t0) / self.span * (self.width - 1))))

    def draw(self, start: float, end: float, char: str, style: str) -> None:
        first, last = self._pos(start), self._pos(max(end, start))
        for i in range(first, last + 1):
            self.cells[i] = (char, style)

    def text(self) -> Text:
        out = Text()
        for char, style in self.cells:
            out.append(char, style=style)
        return out


def _draw_op(bar: _Bar, op: Operation, end: float) -> None:
    if op.kind == "sleep":
        stop = op.finished_at if op.finished_at is not None else end
        bar.draw(op.started_at, stop, "┄", "magenta")
        return
    if op.kind != "step":
        bar.draw(op.started_at, op.finished_at or op.started_at, "•", "")
        return
    for attempt in op.attempts:
        if attempt.retry_at is not None:
            bar.draw(attempt.finished_at, attempt.retry_at, "┄", "yellow")
    for attempt in op.attempts:
        failed = attempt.error is not None
        style = "red" if failed and attempt is op.attempts[-1] else "yellow" if failed else "green"
        bar.draw(attempt.started_at, attempt.finished_at, "━", style)


def timeline_chart(timeline: Timeline, width: int) -> RenderableType:
    """Bars on one time scale: steps (━, yellow for failed attempts), retry waits and sleeps (┄).

    Args:
        timeline: the run's timeline.
        width: the console width to fit in.
    """
    ops = [op for op in timeline.operations if op.kind != "value"]
    if not ops:
        return Text("(no steps or sleeps recorded)", style="dim")
    labels = [compact(f"{op.op_id} {op.name}", 28) for op in ops]
    bar_width = max(20, min(100, width - max(len(label) for label in labels) - 4))
    t0, t1 = timeline.started_at, timeline.end
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    for label, op in zip(labels, ops, strict=True):
        bar = _Bar(bar_width, t0, t1)
        _draw_op(bar, op, t1)
        grid.add_row(label, bar.text())
    total = format_duration(t1 - t0)
    axis = Text("0" + " " * max(1, bar_width - 1 - len(total)) + total, style="dim")
    grid.add_row("", axis)
    return grid


def describe_event(event: Event) -> str:
    """One line saying what an event means (its payload summarised)."""
    info: dict[str, Any] = {}
    if event.kind in ("step_failed", "step_retrying", "sleep_started", "run_failed"):
        try:
            loaded = json.loads(event.data or b"{}")
        except ValueError:
            loaded = {}
        info = loaded if isinstance(loaded, dict) else {}
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
    if event.kind == "value_recorded":
        return _value_line(event.data)
    if event.kind == "run_failed":
        return compact(error, 120)
    if event.kind in ("run_completed", "run_cancelled"):
        return ""
    if event.kind == "hook_created":
        return _hook_line(event.data)
    return _value_line(_local_times(event.data)) if event.data is not None else ""


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


def events_table(events: list[Event], t0: float) -> Table:
    """A run's log: sequence number, time since creation, kind, operation and what it says."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("SEQ", justify="right", no_wrap=True)
    table.add_column("TIME", justify="right", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("OP", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    table.add_column("DETAIL")
    for e in events:
        kind_style = "red" if e.kind in ("step_failed", "run_failed") else ""
        table.add_row(
            str(e.seq),
            _offset(e.created_at, t0),
            Text(e.kind, style=kind_style),
            e.op_id or "",
            e.name or "",
            describe_event(e),
        )
    return table


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
        grid.add_row("size", "-" if size is None else _format_size(size))
    for key, value in (location or {}).items():
        grid.add_row(key.replace("_", " "), value)
    grid.add_row("runs", str(sum(counts.values())))
    by_status = Table(box=None, header_style="bold", pad_edge=False)
    by_status.add_column("STATUS")
    by_status.add_column("RUNS", justify="right")
    for status in (*RUN_STATUSES, *sorted(set(counts) - set(RUN_STATUSES))):
        by_status.add_row(_status(status), str(counts.get(status, 0)))
    return Group(grid, Text(""), by_status)


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
