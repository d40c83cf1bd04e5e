"""``durable dev``: a worker plus a live view of what runs do, for a person at a terminal."""

from __future__ import annotations

import logging
import threading

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

import durable
from cli._common import concurrency_option, console, import_modules, world_location
from cli._dev_table import active_runs
from cli._dev_watch import RunWatcher
from cli._stopping import (
    exit_at_once,
    runs_in_progress,
    stop_on_signals,
    stopping_line,
    taken_over,
)
from durable._decorators import registered_workflows
from durable._errors import DurableError
from durable._runtime import Runtime

__all__ = ["RunWatcher", "active_runs", "dev"]

log = logging.getLogger("durable")


@click.command()
@click.argument("modules", nargs=-1, required=True)
@concurrency_option
@click.option(
    "--refresh", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
    help="Seconds between updates of the view.",
)
@click.option("--plain", is_flag=True, help="Only a log stream, no live table (default off a TTY).")
@click.pass_context
def dev(
    ctx: click.Context, modules: tuple[str, ...], concurrency: int, refresh: float, plain: bool
) -> None:
    """Run a worker for the workflows in MODULES and watch runs live.

    Uses --world (or DURABLE_WORLD), else the world MODULES configured, else the default
    SQLite world. Start runs from another terminal (`durable start MODULE:WORKFLOW '[...]'`)
    or from your code; each run starting, step finishing or retrying, sleep and failure is
    shown as it happens. Ctrl-C stops once the runs in progress reach a durable point; a
    second Ctrl-C stops at once.
    """
    out = console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    import_modules(modules)
    names = sorted(registered_workflows())
    if not names:
        raise click.ClickException(f"no @workflow found in {', '.join(modules)}")
    # As `durable worker`: a worker whatever MODULES configured, on their world unless told.
    runtime = durable.configure(
        ctx.find_root().obj.get("world"),
        worker=True,
        max_concurrent_runs=concurrency,
        poll_interval=0.1,
    )
    runtime.options.report_unknown_workflows = True
    # Only MODULES' workflows: showing a DAG run imports durable.dag, whose runs need handlers
    # this worker may not have (it would take them up and put them back, again and again).
    runtime.options.workflow_names = names
    watcher = RunWatcher(runtime.world)
    counts = watcher.prime()
    out.print(Text(f"durable dev: worker on {world_location(runtime.world)}", style="bold"))
    out.print(f"workflows: {', '.join(names)}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "none yet"
    out.print(f"runs so far: {summary}")
    out.print(Text("waiting for runs; Ctrl-C to stop", style="dim"))
    stop = threading.Event()
    live_view = out.is_terminal and not plain
    in_progress: dict[str, str] = {}

    def at_once() -> None:
        exit_at_once(taken_over(in_progress))

    with stop_on_signals(stop.set, at_once) as stopping:
        runtime.ensure_worker()
        try:
            if live_view:
                # Drawn when it changes, after each poll: it says nothing new in between.
                with Live(
                    active_runs(watcher, runtime.world.now()),
                    console=out,
                    auto_refresh=False,
                    transient=True,
                ) as live:
                    _watch(runtime, watcher, stop, refresh, live)
            else:
                _watch(runtime, watcher, stop, refresh, None, out)
        finally:
            stopping.set()  # from here on, Ctrl-C stops at once
            in_progress.update(runs_in_progress(runtime))
            out.print(Text(stopping_line(in_progress), style="dim"))
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
            live.update(active_runs(watcher, watcher.world.now()), refresh=True)
