"""Tables that fit the terminal they are printed on, and print ten thousand rows in a blink.

rich's ``Table`` measures and renders every cell through several layers, which takes about a
millisecond a row, and when a table is too wide it shortens every column alike, run ids and
statuses included. A :class:`Grid` lays its rows out once it knows the width: it drops the
columns that matter least first, lets the wrapping columns (notes, errors) wrap at spaces and
fold words too long for them, and never cuts a cell of any other column. Piped output (240
columns wide, see :func:`cli._common.console`) keeps every column and wraps nothing shorter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len, chop_cells
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

__all__ = ["Cell", "Column", "Grid", "Note", "Row", "wrap"]

Cell = str | Text
"""A cell's content: plain text, or rich ``Text`` with its own styles."""

_GAP = 2
"""Spaces between columns (what rich's tables without borders use)."""


@dataclass(frozen=True)
class Column:
    """How a column is headed and aligned, and what it gives up when space runs out.

    When the table is wider than the terminal, sacrifices are made in the order of their ranks
    (``drop``, ``fold``, ``below``; 1 first) until it fits. Rank ``0`` never happens.
    """

    header: str = ""
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    """May wrap, at spaces, folding words too long for it; other columns are always whole."""
    min_width: int = 12
    """The narrowest a wrapping column gets."""
    fold: int = 0
    """For a wrapping column: the rank from which it may be narrower than its longest cell
    (``0``: from the start)."""
    drop: int = 0
    """The rank at which the column is left out."""
    below: int = 0
    """The rank at which the column's cells move to a line of their own under each row."""
    instead_of: int | None = None
    """Shown only once the column at this index has been dropped (a shorter form of it)."""
    style: str = ""


@dataclass(frozen=True)
class Layout:
    """How a grid is laid out at one width."""

    shown: list[int]
    """The columns on the row's line, by index."""
    widths: list[int]
    """Their widths."""
    below: int | None = None
    """The column whose cells go on a line of their own under each row, if any."""


@dataclass(frozen=True)
class Row:
    """A row with a style applied to all its cells (``"dim"``)."""

    cells: Sequence[Cell]
    style: str = ""


@dataclass(frozen=True)
class Note:
    """A line across the whole table between rows (``⋯ 9,950 more operations``)."""

    text: str
    style: str = "dim"


class Grid:
    """A table without borders, laid out for the width it is printed at.

    Args:
        columns: the columns, in order.
        rows: each a sequence of cells (one per column), a :class:`Row` or a :class:`Note`.
        header: print the column headers (bold) first.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Cell] | Row | Note],
        *,
        header: bool = True,
    ) -> None:
        self.columns = list(columns)
        self.rows = [row if isinstance(row, Row | Note) else Row(row) for row in rows]
        self.header = header

    # --- layout ---------------------------------------------------------------------------

    def _naturals(self) -> list[int]:
        widths = [_width(c.header) if self.header else 0 for c in self.columns]
        for row in self.rows:
            if isinstance(row, Note):
                continue
            for index, cell in enumerate(row.cells):
                length = _longest_line(cell)
                if length > widths[index]:
                    widths[index] = length
        return widths

    def _least(self, index: int, naturals: Sequence[int], rank: int) -> int:
        column = self.columns[index]
        if not column.wrap or rank < column.fold:
            return naturals[index]
        return min(naturals[index], max(column.min_width, _width(column.header), 1))

    def _need(self, shown: Sequence[int], naturals: Sequence[int], rank: int) -> int:
        least = sum(self._least(i, naturals, rank) for i in shown)
        return least + _GAP * max(len(shown) - 1, 0)

    def layout(self, width: int, naturals: Sequence[int] | None = None) -> Layout:
        """Which columns are shown at this width, how wide, and which goes under the rows."""
        naturals = self._naturals() if naturals is None else naturals
        columns = self.columns
        shown = [i for i, c in enumerate(columns) if c.instead_of is None]
        below: int | None = None
        ranks = sorted({r for c in columns for r in (c.drop, c.fold, c.below) if r})
        rank = 0
        for rank in [0, *ranks]:
            for i in [i for i in shown if columns[i].drop == rank and rank]:
                shown.remove(i)
                shown += [j for j, c in enumerate(columns) if c.instead_of == i]
            for i in [i for i in shown if columns[i].below == rank and rank]:
                shown.remove(i)
                below = i
            shown.sort()
            if self._need(shown, naturals, rank) <= width:
                break
        widths = [self._least(i, naturals, rank) for i in shown]
        spare = width - sum(widths) - _GAP * max(len(shown) - 1, 0)
        # The narrowest wrapping columns are made whole first; the widest takes what is left.
        growing = sorted(
            (k for k, i in enumerate(shown) if columns[i].wrap),
            key=lambda k: naturals[shown[k]],
        )
        for k in growing:
            extra = max(min(naturals[shown[k]] - widths[k], spare), 0)
            widths[k] += extra
            spare -= extra
        while spare < 0 and max(widths, default=0) > 1:
            # Narrower than the columns that must stay whole: the widest one is folded (a run
            # id on two lines can still be copied; a cut one cannot).
            k = widths.index(max(widths))
            cut = min(-spare, widths[k] - 1)
            widths[k] -= cut
            spare += cut
        return Layout(shown, widths, below)

    # --- rendering ------------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Lay the table out for ``options.max_width`` and yield it line by line."""
        width = max(options.max_width, 1)
        naturals = self._naturals()
        layout = self.layout(width, naturals)
        shown, widths = layout.shown, layout.widths
        folded = {i for i, w in zip(shown, widths, strict=True) if w < naturals[i]}
        painter = _Painter(console)
        newline = Segment.line()
        if self.header and shown:
            headers = [Text(self.columns[i].header) for i in shown]
            yield from self._lines(painter, shown, widths, headers, "bold", folded)
        for row in self.rows:
            if isinstance(row, Note):
                for line in wrap(row.text, width):
                    yield from painter.line([Segment(line, painter.style(row.style))])
                continue
            cells = [row.cells[i] if i < len(row.cells) else "" for i in shown]
            text = self._plain_line(shown, widths, cells) if painter.plain else None
            quick = None if painter.plain else self._one_line(painter, shown, widths, cells, row)
            if text is not None:
                yield Segment(text)
                yield newline
            elif quick is not None:
                yield from painter.line(quick)
            else:
                yield from self._lines(painter, shown, widths, cells, row.style, folded)
            if layout.below is not None and layout.below < len(row.cells):
                yield from self._below(painter, row.cells[layout.below], row.style, width)

    def _below(self, painter: _Painter, cell: Cell, row_style: str, width: int) -> RenderResult:
        """A cell on lines of its own under its row, indented: ``  ↳ ValueError: ...``."""
        plain = cell.plain if isinstance(cell, Text) else cell
        if not plain.strip():
            return
        indent = "  ↳ "
        lines = _cell_lines(cell, max(width - len(indent), 1), True, painter.console)
        base = painter.style(row_style)
        for n, pieces in enumerate(lines):
            lead = Segment(indent if n == 0 else " " * len(indent), painter.style("dim"))
            yield from painter.line(
                [lead, *(Segment(p.text, _combine(base, p.style)) for p in pieces)]
            )

    def _plain_line(
        self, shown: Sequence[int], widths: Sequence[int], cells: Sequence[Cell]
    ) -> str | None:
        """A row whose cells all fit on one line, without styles; ``None`` for other rows.

        Most rows are such rows: this is what prints ten thousand of them quickly.
        """
        pieces: list[str] = []
        for k, cell in enumerate(cells):
            text = cell if isinstance(cell, str) else cell.plain  # no colours: no styles
            used = len(text) if text.isascii() else cell_len(text)
            if used > widths[k] or "\n" in text:
                return None
            pad = " " * (widths[k] - used)
            pieces.append(pad + text if self.columns[shown[k]].justify == "right" else text + pad)
        return (" " * _GAP).join(pieces).rstrip()

    def _one_line(
        self,
        painter: _Painter,
        shown: Sequence[int],
        widths: Sequence[int],
        cells: Sequence[Cell],
        row: Row,
    ) -> list[Segment] | None:
        """A row whose cells all fit on one line, quickly; ``None`` for any other row."""
        line: list[Segment] = []
        last = len(shown) - 1
        for k, cell in enumerate(cells):
            if isinstance(cell, Text):
                if cell.spans:
                    return None
                text, style = cell.plain, str(cell.style)
            else:
                text, style = cell, ""
            used = _width(text)
            if used > widths[k] or "\n" in text:
                return None
            column = self.columns[shown[k]]
            pad = " " * (widths[k] - used)
            segment = Segment(text, painter.style(f"{row.style} {column.style} {style}"))
            if column.justify == "right":
                line += [Segment(pad), segment]
            else:
                line += [segment, Segment(pad)] if k < last else [segment]
            if k < last:
                line.append(Segment(" " * _GAP))
        return line

    def _lines(
        self,
        painter: _Painter,
        shown: Sequence[int],
        widths: Sequence[int],
        cells: Sequence[Cell],
        row_style: str,
        folded: set[int],
    ) -> Iterator[Segment]:
        parts = [
            _cell_lines(cell, width, index in folded, painter.console)
            for cell, width, index in zip(cells, widths, shown, strict=True)
        ]
        height = max((len(p) for p in parts), default=1)
        last = len(shown) - 1
        for n in range(height):
            line: list[Segment] = []
            for k, index in enumerate(shown):
                column = self.columns[index]
                pieces = parts[k][n] if n < len(parts[k]) else []
                used = sum(_width(piece.text) for piece in pieces)
                pad = Segment(" " * max(widths[k] - used, 0))
                base = painter.style(f"{row_style} {column.style}")
                if column.justify == "right":
                    line.append(pad)
                line += [Segment(p.text, _combine(base, p.style)) for p in pieces]
                if k < last:
                    if column.justify != "right":
                        line.append(pad)
                    line.append(Segment(" " * _GAP))
            yield from painter.line(line)


def _combine(base: Style | None, style: Style | None) -> Style | None:
    if base is None:
        return style
    return base if style is None else base + style


class _Painter:
    """Writes lines of segments; one plain segment per line when the console has no colours."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plain = console.color_system is None
        self._styles: dict[str, Style | None] = {}

    def line(self, segments: Sequence[Segment]) -> Iterator[Segment]:
        if self.plain:
            yield Segment("".join(s.text for s in segments).rstrip())
        else:
            end = len(segments)
            while end and not segments[end - 1].text.strip():
                end -= 1
            if end:  # without trailing blanks
                yield from (s for s in segments[: end - 1] if s.text)
                last = segments[end - 1]
                yield Segment(last.text.rstrip(), last.style)
        yield Segment.line()

    def style(self, name: str) -> Style | None:
        name = name.strip()
        if name not in self._styles:
            self._styles[name] = Style.parse(name) if name else None
        return self._styles[name]


def _width(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def _longest_line(cell: Cell) -> int:
    text = cell.plain if isinstance(cell, Text) else cell
    if "\n" not in text:
        return _width(text)
    return max(_width(line) for line in text.split("\n"))


def _cell_lines(cell: Cell, width: int, fold: bool, console: Console) -> list[list[Segment]]:
    """A cell as lines of segments, wrapped to ``width`` when ``fold``."""
    if isinstance(cell, str):
        if not fold and "\n" not in cell:
            return [[Segment(cell)]]
        return [[Segment(line)] for line in wrap(cell, width)]
    lines = (
        [cell]
        if not fold and "\n" not in cell.plain
        else cell.wrap(console, width, overflow="fold")
    )
    return [_segments(line, console) for line in lines]


def _segments(text: Text, console: Console) -> list[Segment]:
    if text.spans:  # rendering applies the text's own style beneath its spans
        return list(text.render(console, end=""))
    style = console.get_style(text.style, default=None) if text.style else None
    return [Segment(text.plain, style)]


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` cells: wrapped at spaces, words longer than that folded.

    Newlines in ``text`` are kept.
    """
    width = max(width, 1)
    out: list[str] = []
    for paragraph in text.split("\n"):
        if _width(paragraph) <= width:
            out.append(paragraph)
            continue
        line: str | None = None
        for word in paragraph.split(" "):
            candidate = word if line is None else f"{line} {word}"
            if _width(candidate) <= width:
                line = candidate
                continue
            if line is not None:
                out.append(line)
            pieces = _fold(word, width)
            out.extend(pieces[:-1])
            line = pieces[-1]
        out.append(line or "")
    return out


def _fold(word: str, width: int) -> list[str]:
    if not word:
        return [""]
    if word.isascii():
        return [word[i : i + width] for i in range(0, len(word), width)]
    return chop_cells(word, width)
