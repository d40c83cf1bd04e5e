"""Entry point and commands of the ``durable`` command."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from types import FrameType

import click

import durable
from durable._errors import DurableError


class _Group(click.Group):
    """Turns durable errors into one clear line and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DurableError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.option(
    "--world",
    envvar="DURABLE_WORLD",
    default=None,
    help="World URL (default: $DURABLE_WORLD or sqlite:///.durable/durable.db).",
)
@click.pass_context
def main(ctx: click.Context, world: str | None) -> None:
    """durable: run and inspect durable workflows."""
    ctx.obj = {"world": world}


def import_modules(modules: tuple[str, ...]) -> None:
    """Import the user's modules (by dotted name or file path) so their workflows register."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        name = module
        if module.endswith(".py"):
            name = module[:-3].replace(os.sep, ".")
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise click.ClickException(
                f"could not import {module!r}: {type(exc).__name__}: {exc}"
            ) from exc


@main.command()
@click.argument("modules", nargs=-1, required=True)
@click.option("--concurrency", default=64, show_default=True, help="Runs executed at once.")
@click.option("--poll-interval", default=0.2, show_default=True, help="Seconds between polls.")
@click.option("--lease-ttl", default=30.0, show_default=True, help="Seconds a lease lasts.")
@click.pass_context
def worker(
    ctx: click.Context,
    modules: tuple[str, ...],
    concurrency: int,
    poll_interval: float,
    lease_ttl: float,
) -> None:
    """Execute pending, due and orphaned runs of the workflows in MODULES until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import_modules(modules)
    runtime = durable.configure(
        ctx.obj["world"],
        max_concurrent_runs=concurrency,
        poll_interval=poll_interval,
        lease_ttl=lease_ttl,
    )
    names = sorted(durable._decorators.registered_workflows())
    if not names:
        raise click.ClickException(f"no @workflow found in {', '.join(modules)}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logging.getLogger("durable").info(
        "worker %s on %s: %s", runtime.owner, runtime.world.url, ", ".join(names)
    )
    runtime.ensure_worker()
    while not stop.wait(0.5):
        if runtime.fatal_error is not None:
            runtime.stop()
            raise click.ClickException(str(runtime.fatal_error))
    logging.getLogger("durable").info("stopping: waiting for runs in progress")
    runtime.stop()
