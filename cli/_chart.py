"""The timeline ``durable inspect`` draws: a run's operations as bars on one time scale."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.text import Text

from cli._grid import Column, Grid, Note, Row
from cli._timeline import Operation, Timeline, op_key
from cli._values import compact, format_duration

__all__ = ["OPERATIONS_SHOWN", "timeline_chart"]

OPERATIONS_SHOWN = 40
"""Rows of a run's operations table and timeline before the middle is left out (``--all``)."""

_LABEL_CHARS = 32


class _Bar:
    """One row of the timeline: characters placed on a scale from t0 to t1."""

    def __init__(self, width: int, t0: float, t1: float) -> None:
        self.width = width
        self.t0 = t0
        self.span = max(t1 - t0, 1e-9)
        self.chars = [" "] * width
        self.styles: list[tuple[int, int, str]] = []
        """Each drawing's cells and style, in order: a later one shows over an earlier one."""

    def _pos(self, t: float) -> int:
        return min(self.width - 1, max(0, int((t - self.t0) / self.span * (self.width - 1))))

    def draw(self, start: float, end: float, char: str, style: str) -> None:
        first, last = self._pos(start), self._pos(max(end, start))
        self.chars[first : last + 1] = [char] * (last - first + 1)
        if style:
            self.styles.append((first, last + 1, style))

    def text(self) -> Text:
        out = Text("".join(self.chars).rstrip())
        for first, last, style in self.styles:
            out.stylize(style, first, last)
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


def _grouped(ops: Sequence[Operation]) -> list[tuple[str, list[Operation]]]:
    """One row per kind and name of operation at one place in the program.

    A loop's steps (``1``…``10000``) make one row, and so does each step of ``map`` branches
    (``2.0.1``…``2.999.1``): the branch indexes are left out of the place.
    """
    groups: dict[tuple[str, str, tuple[int | None, ...]], list[Operation]] = {}
    for op in ops:
        key = op_key(op.op_id)
        place = tuple(None if i % 2 else part for i, part in enumerate(key[:-1]))
        groups.setdefault((op.kind, op.name, place), []).append(op)
    rows = []
    for members in groups.values():
        first, last = members[0], members[-1]
        if len(members) == 1:
            rows.append((f"{first.op_id} {first.name}", members))
        else:
            span = f"{first.op_id}…{last.op_id}"
            rows.append((f"{span} {first.name} ×{len(members):,}", members))
    return rows


def timeline_chart(
    timeline: Timeline, width: int, limit: int | None = OPERATIONS_SHOWN
) -> RenderableType:
    """Bars on one time scale: steps (━, yellow for failed attempts), retry waits and sleeps (┄).

    Args:
        timeline: the run's timeline.
        width: the console width to fit in.
        limit: past this many operations, alike ones share a row (see :func:`_grouped`), and
            past this many rows the middle ones are left out; ``None`` draws one row each.
    """
    ops = [op for op in timeline.operations if op.kind != "value"]
    if not ops:
        return Text("(no steps or sleeps recorded)", style="dim")
    grouped = limit is not None and len(ops) > limit
    if grouped:
        groups = _grouped(ops)
    else:
        groups = [(f"{op.op_id} {op.name}", [op]) for op in ops]
    shown: list[tuple[str, list[Operation]] | int] = list(groups)
    if limit is not None and len(groups) > limit:
        half = max(limit // 2, 1)
        shown = [*groups[:half], len(groups) - 2 * half, *groups[-half:]]
    labels = [compact(item[0], _LABEL_CHARS) for item in shown if not isinstance(item, int)]
    bar_width = max(20, min(100, width - max(len(label) for label in labels) - 4))
    t0, t1 = timeline.started_at, timeline.end
    rows: list[Sequence[Text | str] | Row | Note] = []
    for item in shown:
        if isinstance(item, int):
            rows.append(Note(f"⋯ {item:,} more rows (--all shows every operation)"))
            continue
        label, members = item
        bar = _Bar(bar_width, t0, t1)
        for op in members:
            _draw_op(bar, op, t1)
        rows.append([compact(label, _LABEL_CHARS), bar.text()])
    total = format_duration(t1 - t0)
    axis = "0" + " " * max(1, bar_width - 1 - len(total)) + total
    rows.append(["", Text(axis, style="dim")])
    if grouped:
        rows.append(Note(f"{len(ops):,} operations, alike ones in one row (--all: one each)"))
    return Grid([Column(), Column()], rows, header=False)
