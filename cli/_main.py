"""Entry point and commands of the ``durable`` command."""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

import durable
from cli._aws import bootstrap, deploy, dlq, logs, outputs, teardown
from cli._common import concurrency_option, import_modules, world_location
from cli._dag import dag
from cli._dev import dev
from cli._hooks import hooks, resume
from cli._runs import cancel, events, gc, inspect, retry, runs, start, world
from cli._stopping import (
    exit_at_once,
    runs_in_progress,
    stop_on_signals,
    stopping_line,
    taken_over,
)
from durable._errors import DurableError

__all__ = ["import_modules", "main"]


class _Group(click.Group):
    """Turns every error into one clear line on stderr and a non-zero exit code.

    ``DURABLE_DEBUG=1`` shows the traceback of unexpected errors instead.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DurableError as exc:
            raise click.ClickException(str(exc)) from exc
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`durable runs | head -1`): nothing is wrong. Python would
            # still complain flushing stdout at exit, so it goes to /dev/null first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except Exception as exc:
            if os.environ.get("DURABLE_DEBUG") == "1":
                raise
            message = " ".join(str(exc).split()) or "(no message)"
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {message} (DURABLE_DEBUG=1 shows the traceback)"
            ) from exc


@click.group(cls=_Group)
@click.option(
    "--world",
    envvar="DURABLE_WORLD",
    default=None,
    help="World URL (default: $DURABLE_WORLD or sqlite:///.durable/durable.db).",
)
@click.version_option(package_name="durable-sdk", prog_name="durable")
@click.pass_context
def main(ctx: click.Context, world: str | None) -> None:
    """durable: run and inspect durable workflows.

    \b
    Run workflows:   worker, dev, start
    Look at runs:    runs, inspect, events, hooks, world info
    Change runs:     cancel, retry, resume, gc
    DAG specs:       dag validate, dag run, dag schema
    On AWS:          bootstrap, deploy, outputs, logs, dlq, teardown
    """  # noqa: D301 - "\b" keeps click from rewrapping the lines
    ctx.obj = {"world": world}


@main.command()
@click.argument("modules", nargs=-1, required=True)
@concurrency_option
@click.option(
    "--poll-interval", default=0.2, show_default=True, type=click.FloatRange(min=0.01),
    help="Seconds between polls.",
)
@click.option(
    "--lease-ttl", default=30.0, show_default=True, type=click.FloatRange(min=1.0),
    help="Seconds a lease lasts unrenewed: how soon another host takes over a dead worker's "
    "runs (on one host, at once).",
)
@click.option(
    "--log-level", default="info", show_default=True, envvar="DURABLE_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="What the worker logs: warning keeps only failed runs and trouble (env "
    "DURABLE_LOG_LEVEL).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    modules: tuple[str, ...],
    concurrency: int,
    poll_interval: float,
    lease_ttl: float,
    log_level: str,
) -> None:
    """Execute pending, due and orphaned runs of the workflows in MODULES until stopped.

    Uses --world (or DURABLE_WORLD), else the world MODULES configured, else the default
    SQLite world; it executes runs even if MODULES say `configure(worker=False)`.

    Ctrl-C or SIGTERM stops once the runs in progress reach a durable point (their steps in
    flight finish first); a second Ctrl-C stops at once.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    import_modules(modules)
    names = sorted(durable._decorators.registered_workflows())
    if not names:
        raise click.ClickException(f"no @workflow found in {', '.join(modules)}")
    # worker=True (which starts it): a module that turns its own process's worker off (an API
    # in front of workers does) must not turn this one off. Without --world, its world stays.
    runtime = durable.configure(
        ctx.obj["world"],
        worker=True,
        max_concurrent_runs=concurrency,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
    )
    runtime.options.report_unknown_workflows = True
    runtime.options.workflow_names = names  # MODULES' workflows, not what the CLI imports later
    stop = threading.Event()
    in_progress: dict[str, str] = {}

    def at_once() -> None:
        exit_at_once(taken_over(in_progress))

    log = logging.getLogger("durable")
    with stop_on_signals(stop.set, at_once) as stopping:
        log.info("worker %s on %s: %s", runtime.owner, world_location(runtime.world),
                 ", ".join(names))
        runtime.ensure_worker()
        while not stop.wait(0.2) and runtime.fatal_error is None:
            pass
        stopping.set()  # from here on, Ctrl-C stops at once
        in_progress.update(runs_in_progress(runtime))
        log.info("%s", stopping_line(in_progress))
        runtime.stop()
    if runtime.fatal_error is not None:
        raise click.ClickException(f"worker stopped: {runtime.fatal_error}")
    log.info("stopped")


for _command in (dev, start, runs, inspect, events, cancel, retry, gc, world, hooks, resume, dag):
    main.add_command(_command)

for _command in (bootstrap, deploy, outputs, logs, dlq, teardown):
    main.add_command(_command)


def _world_given(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().obj["world"] = value


def _accept_world_option(command: click.Command) -> None:
    """Let ``--world`` follow the command too (``durable runs --world URL``), not only lead."""
    command.params.append(
        click.Option(
            ["--world"],
            expose_value=False,
            callback=_world_given,
            help="World URL (default: $DURABLE_WORLD or sqlite:///.durable/durable.db).",
        )
    )
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            _accept_world_option(subcommand)


for _command in main.commands.values():
    _accept_world_option(_command)
