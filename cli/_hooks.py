"""``durable hooks`` and ``durable resume``: see and resume the hooks runs wait on."""

from __future__ import annotations

import json
from collections import Counter

import click
from rich.table import Table

from cli._common import (
    echo_json,
    import_from_project_directory,
    json_option,
    opened_world,
    read_json_argument,
    show,
)
from cli._values import format_local, iso
from durable._children import CHILD_TOKEN_PREFIX
from durable._errors import RunNotFound
from durable._hooks import encode_payload
from durable.world import HookRecord, World


def hook_json(hook: HookRecord, received: int = 0, now: float | None = None) -> dict[str, object]:
    """A hook as stable JSON (``timed_out``: its timeout passed before ``now``)."""
    return {
        "token": hook.token,
        "run_id": hook.run_id,
        "op_id": hook.op_id,
        "created_at": iso(hook.created_at),
        "timeout_at": iso(hook.timeout_at),
        "timed_out": now is not None and hook.timed_out(now),
        "schema": hook.schema,
        "received": received,
    }


def payloads_received(world: World, hooks: list[HookRecord]) -> dict[str, int]:
    """How many payloads each hook has had, by token.

    A hook that has had some is open for more (a run may iterate it), not necessarily what its
    run waits on.
    """
    by_run: dict[str, list[HookRecord]] = {}
    for hook in hooks:
        by_run.setdefault(hook.run_id, []).append(hook)
    counts: dict[str, int] = {}
    for run_id, theirs in by_run.items():
        per_op = Counter(e.op_id for e in world.read_events(run_id) if e.kind == "hook_received")
        for hook in theirs:
            counts[hook.token] = per_op.get(hook.op_id, 0)
    return counts


@click.command()
@click.option("--run", "run_id", help="Only hooks of this run.")
@json_option
@click.pass_context
def hooks(ctx: click.Context, run_id: str | None, as_json: bool) -> None:
    """List open hooks (those that take a payload), oldest first.

    A hook whose timeout passed while no worker ran its run is listed until the run is back,
    marked: it takes no payload.

    RECEIVED counts the payloads a hook has had: 0, its run waits for the first; more, it is
    open for the next (a run may iterate a hook, or have gone on with the one it took).
    """
    with opened_world(ctx) as world:
        if run_id is not None and world.get_run(run_id) is None:
            raise RunNotFound(run_id)  # not "no hooks are open": a typo must not read as that
        # A parent's wait for a child is a hook of the engine's own, resumed by the child.
        live = [h for h in world.list_hooks(run_id) if not h.token.startswith(CHILD_TOKEN_PREFIX)]
        received = payloads_received(world, live)
        now = world.now()
    if as_json:
        echo_json({"hooks": [hook_json(h, received[h.token], now) for h in live]})
        return
    if not live:
        click.echo("no hooks are open" + (f" in run {run_id}" if run_id else ""))
        return
    table = Table("TOKEN", "RUN", "OP", "CREATED", "TIMES OUT", "RECEIVED", box=None)
    for hook in live:
        timeout = "-" if hook.timeout_at is None else format_local(hook.timeout_at)
        if hook.timed_out(now):
            # Its run has not been back since: it takes its timeout path when a worker takes it.
            timeout += " (passed: takes no payload)"
        table.add_row(
            hook.token,
            hook.run_id,
            hook.op_id,
            format_local(hook.created_at),
            timeout,
            str(received[hook.token]),
        )
    show(table)


@click.command()
@click.argument("token")
@click.argument("payload", required=False, default="null")
@json_option
@click.pass_context
def resume(ctx: click.Context, token: str, payload: str, as_json: bool) -> None:
    """Deliver PAYLOAD (JSON, default null) to the run waiting on hook TOKEN.

    For payloads too large for a command line, `-` reads PAYLOAD from stdin and `@FILE` from a
    file.

    \b
    Examples:
      durable resume email-verified:42 '{"verified": true}'
      durable resume report-ready:7 @report.json
    """  # noqa: D301 - "\b" keeps click from rewrapping the examples
    if token.startswith(CHILD_TOKEN_PREFIX):
        raise click.ClickException(
            f"{token!r} is how a parent waits for its child run; the child's end resumes it "
            "(cancel the child with `durable cancel` to stop the wait)"
        )
    payload, what = read_json_argument(payload, "PAYLOAD")
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): quote it for the "
            """shell, e.g. '{"verified": true}'"""
        ) from None
    import_from_project_directory()  # a hook's payload model is the user's code
    with opened_world(ctx) as world:
        hook = world.resume_hook(token, encode_payload(world, token, value))
    if as_json:
        echo_json({"token": token, "run_id": hook.run_id, "resumed": True})
        return
    click.echo(f"resumed run {hook.run_id} (hook {token})")
