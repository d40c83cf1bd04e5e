"""The live table of ``durable dev``: the runs in progress, fitted to the terminal's width."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from cli._dev_watch import RunWatcher
from cli._render import STATUS_STYLES
from cli._values import format_ago
from durable.world import RunRecord

__all__ = ["ROWS", "active_runs"]

ROWS = 15
"""How many runs the table shows (the newest)."""

_GAP = 2
"""Columns between two of the table's columns."""
_SHORTEST_WORKFLOW = 8
"""The fewest columns a shortened workflow name is still worth showing in."""
_SHORTEST_NOTE = 24
"""The fewest columns a shortened status with what the run waits for is worth showing in."""


@dataclass
class _Row:
    run_id: str
    workflow: str
    status: str
    note: str
    since: str


class _ActiveRuns:
    """The table, laid out when drawn so that it fits the terminal as it is then.

    Its rows are read before, in the polling thread: a live display draws from a thread of its
    own, while the watcher may be changing.
    """

    def __init__(self, rows: list[_Row], total: int) -> None:
        self.rows = rows
        self.total = total

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.rows:
            yield Text("active runs: none; start one with `durable start MODULE:WORKFLOW`")
            return
        yield _table(self.rows, options.max_width, self.total)
        if self.total > len(self.rows):
            yield Text(f"…and {self.total - len(self.rows):,} more", style="dim")


def active_runs(watcher: RunWatcher, now: float) -> _ActiveRuns:
    """The newest unfinished runs a watcher follows, as a table for a terminal.

    Its title and last line count every unfinished run in the world. Columns go from least to
    most needed as the terminal narrows: when the run began, then what it waits for, then
    (shortened first) its workflow; its id and status stay whole.
    """
    rows = [_row(watcher, record, now) for record in watcher.active(ROWS)]
    # The world's count: the watcher follows at most so many runs, and lists them now and then.
    return _ActiveRuns(rows, max(watcher.unfinished_count(), len(rows)))


def _row(watcher: RunWatcher, record: RunRecord, now: float) -> _Row:
    note: str = record.status
    waiting = watcher.waiting(record.id)
    if waiting is not None:
        note = f"{record.status}, {waiting.describe(now)}"
    return _Row(
        record.id, record.workflow_name, record.status, note, format_ago(record.created_at, now)
    )


def _widths(rows: list[_Row]) -> dict[str, int]:
    return {
        "id": max(len("RUN ID"), *(len(r.run_id) for r in rows)),
        "workflow": max(len("WORKFLOW"), *(len(r.workflow) for r in rows)),
        "note": max(len("STATUS"), *(len(r.note) for r in rows)),
        "status": max(len("STATUS"), *(len(r.status) for r in rows)),
        "since": max(len("SINCE"), *(len(r.since) for r in rows)),
    }


def _layout(widths: dict[str, int], width: int) -> dict[str, int]:
    """The columns to show, with their widths."""

    def room(columns: dict[str, int]) -> int:
        return width - sum(columns.values()) - _GAP * (len(columns) - 1)

    for names in (("id", "workflow", "note", "since"), ("id", "workflow", "note")):
        columns = {name: widths[name] for name in names}
        if room(columns) >= 0:
            return columns
    columns = {"id": widths["id"], "workflow": widths["workflow"], "note": 0}
    if room(columns) >= _SHORTEST_NOTE and widths["note"] > widths["status"]:
        return {**columns, "note": room(columns)}
    columns = {"id": widths["id"], "workflow": widths["workflow"], "status": widths["status"]}
    if room(columns) >= 0:
        return columns
    columns = {"id": widths["id"], "status": widths["status"]}
    left = room(columns) - _GAP
    if left >= _SHORTEST_WORKFLOW:
        columns = {"id": widths["id"], "workflow": left, "status": widths["status"]}
    return columns


def _table(rows: list[_Row], width: int, total: int) -> Table:
    columns = _layout(_widths(rows), width)
    table = Table(
        title=f"active runs ({total:,})",
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    if sum(columns.values()) + _GAP * (len(columns) - 1) > width:
        # Too narrow even for both: the id folds onto more lines rather than losing characters.
        table.add_column("RUN ID", overflow="fold")
    else:
        table.add_column("RUN ID", no_wrap=True, min_width=columns["id"])
    if "workflow" in columns:
        table.add_column("WORKFLOW", no_wrap=True, max_width=columns["workflow"])
    table.add_column("STATUS", no_wrap=True, max_width=columns.get("note"))
    if "since" in columns:
        table.add_column("SINCE", no_wrap=True)
    for row in rows:
        status = row.note if "note" in columns else row.status
        cells: list[str | Text] = [row.run_id]
        if "workflow" in columns:
            cells.append(row.workflow)
        cells.append(Text(status, style=STATUS_STYLES.get(row.status, "")))
        if "since" in columns:
            cells.append(row.since)
        table.add_row(*cells)
    return table
