"""``durable dev``: a worker plus a live view of what runs do, for a person at a terminal."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

import durable
from cli._common import console, import_modules, world_url
from cli._render import STATUS_STYLES, describe_event
from cli._timeline import build_timeline
from cli._values import format_ago, format_duration, format_when
from durable._decorators import registered_workflows
from durable._errors import DurableError
from durable._runtime import Runtime
from durable.world import FINISHED_STATUSES, Event, RunRecord, World

__all__ = ["RunWatcher", "dev"]

log = logging.getLogger("durable")

_RECENT = 200
"""How many of the newest runs (and of the unfinished runs by status) each poll looks at."""

_UNFINISHED = ("pending", "running", "suspended")

_ICONS = {
    "run_created": ("▶", "bold cyan"),
    "step_completed": ("✓", "green"),
    "step_retrying": ("↻", "yellow"),
    "step_failed": ("✗", "bold red"),
    "sleep_started": ("☾", "magenta"),
    "value_recorded": ("·", "dim"),
    "run_completed": ("■", "bold green"),
    "run_failed": ("■", "bold red"),
    "run_cancelled": ("■", "yellow"),
}


class RunWatcher:
    """Turns changes in a world into lines of a live log, by polling it.

    Each :meth:`poll` lists the newest runs (and re-reads the unfinished ones it follows), reads
    the events each gained since the last poll, and reports them along with status changes that
    leave no event (a run suspending or resuming).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._seen: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}

    def prime(self) -> dict[str, int]:
        """Remember the runs that already exist, so only what happens from now on is shown.

        Returns:
            The number of runs by status.
        """
        runs = self.world.list_runs(limit=_RECENT)
        for status in _UNFINISHED:
            runs += self.world.list_runs(status=status, limit=_RECENT)
        for record in runs:
            self._seen[record.id] = record
            if record.status not in FINISHED_STATUSES:
                self._events[record.id] = self.world.read_events(record.id)
        return self.world.count_runs()

    def active(self) -> list[RunRecord]:
        """The unfinished runs being followed, oldest first."""
        runs = [r for r in self._seen.values() if r.status not in FINISHED_STATUSES]
        return sorted(runs, key=lambda r: r.created_at)

    def poll(self) -> list[Text]:
        """Look for changes; returns one line per thing that happened, oldest first."""
        current = {r.id: r for r in self.world.list_runs(limit=_RECENT)}
        for status in _UNFINISHED:  # older runs that are still going (e.g. waking up)
            current.update((r.id, r) for r in self.world.list_runs(status=status, limit=_RECENT))
        for run_id, old in self._seen.items():
            if run_id not in current and old.status not in FINISHED_STATUSES:
                record = self.world.get_run(run_id)
                if record is not None:
                    current[run_id] = record
        lines: list[tuple[float, int, Text]] = []
        for record in sorted(current.values(), key=lambda r: r.created_at):
            lines.extend(self._changes(record))
        lines.sort(key=lambda item: (item[0], item[1]))
        # Finished runs that fell out of the newest ones never change again: forget them.
        self._seen = {
            run_id: r
            for run_id, r in self._seen.items()
            if run_id in current or r.status not in FINISHED_STATUSES
        }
        return [line for _, _, line in lines]

    def _changes(self, record: RunRecord) -> list[tuple[float, int, Text]]:
        old = self._seen.get(record.id)
        self._seen[record.id] = record
        if old is not None and old.last_seq == record.last_seq and old.status == record.status:
            return []
        after = 0 if old is None else old.last_seq
        history = self._events.get(record.id)
        if history is None:
            # Not followed so far (new, or first seen finished): fetch the whole log once.
            everything = self.world.read_events(record.id)
            history = [e for e in everything if e.seq <= after]
            new = [e for e in everything if e.seq > after]
            self._events[record.id] = history
        else:
            new = self.world.read_events(record.id, after) if record.last_seq > after else []
        history.extend(new)
        lines: list[tuple[float, int, Text]] = []
        if new:
            timeline = build_timeline(record, history, self.world.now())
            durations: dict[int, float | None] = {}
            for op in timeline.operations:
                for attempt in op.attempts:
                    durations[attempt.seq] = attempt.finished_at - attempt.started_at
            for event in new:
                if event.kind == "value_recorded":
                    continue
                duration = durations.get(event.seq)
                if event.kind in ("run_completed", "run_failed", "run_cancelled"):
                    duration = event.created_at - timeline.started_at
                lines.append((event.created_at, event.seq, self._line(record, event, duration)))
        if old is not None and old.status == "suspended" and record.status != "suspended":
            at = new[0].created_at if new else record.updated_at
            lines.append((at, after, _status_line(record, at, "▶ resumed", "cyan")))
        if record.status == "suspended" and (old is None or old.status != "suspended"):
            wake = record.wake_at
            when = "until an outside event" if wake is None else f"until {format_when(wake)}"
            line = _status_line(record, record.updated_at, "☾ suspended", "magenta")
            line.append(f"  {when}; no thread is held", style="dim")
            lines.append((record.updated_at, record.last_seq + 1, line))
        if record.status in FINISHED_STATUSES:
            self._events.pop(record.id, None)
        return lines

    def _line(self, record: RunRecord, event: Event, duration: float | None) -> Text:
        icon, style = _ICONS.get(event.kind, ("•", ""))
        line = _prefix(event.created_at, record)
        line.append(f"{icon} ", style=style)
        what = {
            "run_created": f"started {record.workflow_name}",
            "step_completed": f"step {event.name}",
            "step_retrying": f"step {event.name}",
            "step_failed": f"step {event.name} failed",
            "sleep_started": "sleep",
            "run_completed": "completed",
            "run_failed": "failed",
            "run_cancelled": "cancelled",
        }.get(event.kind, f"{event.kind} {event.name or ''}".strip())
        line.append(what, style=style if event.kind.startswith("run_") else "")
        if duration is not None and event.kind != "sleep_started":
            line.append(f" ({format_duration(duration)})", style="dim")
        detail = describe_event(event) if event.kind != "run_created" else ""
        if detail:
            line.append(f"  {detail}", style="red" if "fail" in event.kind else "dim")
        return line


def _status_line(record: RunRecord, at: float, what: str, style: str) -> Text:
    line = _prefix(at, record)
    line.append(what, style=style)
    return line


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S.%f")[:-3]


def _prefix(timestamp: float, record: RunRecord) -> Text:
    line = Text(f"{_clock(timestamp)}  ", style="dim")
    line.append(f"{record.id}  ", style="cyan")
    return line


def _active_table(watcher: RunWatcher, now: float) -> Table:
    table = Table(title="active runs", title_justify="left", box=None, header_style="bold")
    table.add_column("RUN ID", no_wrap=True)
    table.add_column("WORKFLOW", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("SINCE", no_wrap=True)
    active = watcher.active()
    for r in active[-15:]:
        note: str = r.status
        if r.status == "suspended" and r.wake_at is not None:
            note = f"suspended, wakes {format_ago(r.wake_at, now)}"
        table.add_row(
            r.id,
            r.workflow_name,
            Text(note, style=STATUS_STYLES.get(r.status, "")),
            format_ago(r.created_at, now),
        )
    if not active:
        table.add_row(Text("none: start one with `durable start MODULE:WORKFLOW`", style="dim"))
    return table


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("modules", nargs=-1, required=True)
@click.option("--concurrency", default=64, show_default=True, help="Runs executed at once.")
@click.option(
    "--refresh", default=0.5, show_default=True, help="Seconds between updates of the view."
)
@click.option("--plain", is_flag=True, help="Only a log stream, no live table (default off a TTY).")
@click.pass_context
def dev(
    ctx: click.Context, modules: tuple[str, ...], concurrency: int, refresh: float, plain: bool
) -> None:
    """Run a worker for the workflows in MODULES and watch runs live.

    Uses the default SQLite world (or --world / DURABLE_WORLD). Start runs from another
    terminal (`durable start MODULE:WORKFLOW '[...]'`) or from your code; each run starting,
    step finishing or retrying, sleep and failure is shown as it happens. Ctrl-C stops.
    """
    out = console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    import_modules(modules)
    names = sorted(registered_workflows())
    if not names:
        raise click.ClickException(f"no @workflow found in {', '.join(modules)}")
    runtime = durable.configure(world_url(ctx), max_concurrent_runs=concurrency, poll_interval=0.1)
    runtime.options.report_unknown_workflows = True
    watcher = RunWatcher(runtime.world)
    counts = watcher.prime()
    out.print(Text(f"durable dev: worker on {runtime.world.url}", style="bold"))
    out.print(f"workflows: {', '.join(names)}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "none yet"
    out.print(f"runs so far: {summary}")
    out.print(Text("waiting for runs; Ctrl-C to stop", style="dim"))
    stop = threading.Event()
    live_view = out.is_terminal and not plain
    with _signals_set(stop):
        runtime.ensure_worker()
        try:
            if live_view:
                with Live(
                    _active_table(watcher, runtime.world.now()),
                    console=out,
                    refresh_per_second=4,
                    transient=True,
                ) as live:
                    _watch(runtime, watcher, stop, refresh, live)
            else:
                _watch(runtime, watcher, stop, refresh, None, out)
        finally:
            out.print(
                Text("stopping: waiting for runs in progress to finish or suspend", style="dim")
            )
            runtime.stop()
            runtime.world.close()
    if runtime.fatal_error is not None:
        raise click.ClickException(f"worker stopped: {runtime.fatal_error}")
    out.print("stopped")


def _watch(
    runtime: Runtime,
    watcher: RunWatcher,
    stop: threading.Event,
    refresh: float,
    live: Live | None,
    out: Console | None = None,
) -> None:
    """Print what happens every ``refresh`` seconds until stopped (or the worker fails)."""
    target = live.console if live is not None else out
    if target is None:
        raise ValueError("_watch needs a live display or a console")
    while not stop.wait(refresh) and runtime.fatal_error is None:
        try:
            lines = watcher.poll()
        except DurableError as exc:
            log.warning("dev: %s", exc)
            continue
        for line in lines:
            target.print(line, soft_wrap=True)
        if live is not None:
            live.update(_active_table(watcher, watcher.world.now()))
