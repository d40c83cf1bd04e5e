"""Commands that start, list, inspect, cancel and clean up runs."""

from __future__ import annotations

import contextlib
import inspect as pyinspect
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import click
from rich.console import RenderableType
from rich.text import Text

import durable
from cli._common import (
    console,
    echo_json,
    json_option,
    load_workflow,
    opened_world,
    read_json_argument,
    show,
    starting_world,
    world_location,
)
from cli._dag_spec import DAG_WORKFLOW, dag_name
from cli._dag_view import child_records, dag_nodes, node_json, nodes_table
from cli._render import (
    OPERATIONS_SHOWN,
    events_table,
    format_size,
    operations_table,
    run_header,
    run_waits,
    runs_table,
    timeline_chart,
    world_table,
)
from cli._schema import event_json, run_json, timeline_json
from cli._stopping import INTERRUPTED, exit_at_once, stop_on_signals, taken_over
from cli._timeline import build_timeline
from cli._values import compact, format_ago, format_duration, format_local, iso, shorten
from cli._wait import RunDriver
from cli._waits import worker_wait
from durable._children import child_ids
from durable._coerce import check_plain_arguments, coerce_arguments
from durable._decorators import unexpected_keywords
from durable._durations import parse_duration
from durable._errors import (
    DurableError,
    InvalidDuration,
    RunNotFound,
    WorkflowCancelled,
    WorkflowFailed,
    WorldError,
)
from durable._retry import retry_run
from durable._run import cancel_run, outcome_of
from durable._runtime import Runtime
from durable.world import (
    FINISHED_STATUSES,
    RUN_STATUSES,
    Event,
    RunRecord,
    World,
)

__all__ = ["cancel", "events", "gc", "inspect", "runs", "start", "world"]


def parse_args(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """Split the ARGS of ``durable start`` into positional and keyword arguments.

    ``-`` reads ARGS from stdin and ``@PATH`` from a file (see :func:`read_json_argument`).

    Raises:
        click.ClickException: the input cannot be read, is not JSON, or is neither a list nor
            an object.
    """
    if text is None:
        return [], {}
    text, what = read_json_argument(text, "ARGS")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(
            f"{what} is not valid JSON ({exc}): pass a JSON list of positional arguments or an "
            "object of keyword arguments, e.g. '[\"ada@example.com\"]' or "
            "'{\"email\": \"ada@example.com\"}'"
        ) from exc
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise click.ClickException(
        f"{what} must be a JSON list (positional arguments) or object (keyword arguments), "
        f"got {type(value).__name__}: {compact(text)}"
    )


def _check_arguments(
    wf: durable.Workflow[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> None:
    try:
        signature = pyinspect.signature(wf.definition.fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
        shown = signature.replace(parameters=params, return_annotation=signature.empty)
        why = unexpected_keywords(signature, kwargs) or exc
        raise click.ClickException(f"ARGS do not match {wf.name}{shown}: {why}") from exc
    try:  # the worker does the same; refused here, before the run is recorded
        check_plain_arguments(wf.definition.fn, f"ARGS of {wf.name}", tuple(args), kwargs)
        coerce_arguments(wf.definition.fn, f"ARGS of {wf.name}", tuple(args), kwargs)
    except TypeError as exc:
        raise click.ClickException(str(exc)) from exc


def _get(world: World, run_id: str) -> RunRecord:
    record = world.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return record


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    # Keeps the user's print() calls out of a --json document on stdout.
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


@click.command()
@click.argument("target", metavar="MODULE:WORKFLOW")
@click.argument("args", metavar="[ARGS]", required=False)
@click.option("--run-id", help="Choose the run id; starting an existing id returns that run.")
@click.option(
    "--wait",
    is_flag=True,
    help="Execute the run (only this run) in this process and print its result.",
)
@click.option(
    "--timeout",
    type=float,
    help="Only with --wait: stop waiting after this many seconds and leave the run to a worker.",
)
@click.option(
    "--run-timeout",
    metavar="DURATION",
    help='The run\'s own time limit ("30m", "2h", seconds): still unfinished then, it is '
    "cancelled (undoing its saga) and ends timed out.",
)
@json_option
@click.pass_context
def start(
    ctx: click.Context,
    target: str,
    args: str | None,
    run_id: str | None,
    wait: bool,
    timeout: float | None,
    run_timeout: str | None,
    as_json: bool,
) -> None:
    """Start a run of WORKFLOW (defined in MODULE) and print its id.

    ARGS is JSON: a list is passed as positional arguments, an object as keyword arguments.
    For inputs too large for a command line, `-` reads ARGS from stdin and `@FILE` from a file.
    Without --wait the run is recorded as pending for a worker (`durable worker MODULE` or
    `durable dev MODULE`). With --wait this process executes the run, and no other, printing the
    result: while it sleeps or waits on a hook this process waits and continues it when due (a
    worker may continue it instead). Ctrl-C leaves it to a worker.

    \b
    Examples:
      durable start examples.signup:signup '["ada@example.com"]'
      durable start examples.signup:signup '{"email": "ada@example.com"}' --wait
      durable start examples.orders:place_order @order.json
      produce-orders | durable start examples.orders:place_order -
    """  # noqa: D301 - "\b" keeps click from rewrapping the examples
    if timeout is not None and not wait:
        raise click.UsageError(
            "--timeout is how long --wait waits for the run: add --wait, or drop --timeout "
            "(without --wait the command returns once the run is recorded)",
            ctx,
        )
    limit = _parse_age(run_timeout, "--run-timeout") if run_timeout is not None else None
    if limit is not None and limit <= 0:
        raise click.ClickException(f"--run-timeout must be more than 0 seconds, got {run_timeout}")
    positional, keywords = parse_args(args)
    wf = load_workflow(target)
    _check_arguments(wf, positional, keywords)
    # No embedded worker, even with --wait: it would execute any run of the module's workflows
    # waiting in the world. wait_for_run executes this run (and its children) only.
    runtime = durable.configure(starting_world(ctx, wait), worker=False)
    try:
        try:
            # Checks the id first.
            options = wf.with_options(run_id=run_id, execute=False, timeout=limit)
        except (TypeError, ValueError) as exc:
            raise click.ClickException(f"--run-id: {exc}") from None
        existing = runtime.world.get_run(run_id) if run_id else None
        module = target.rpartition(":")[0]
        interrupted = False
        with stdout_to_stderr(as_json):
            run = options.start(*positional, **keywords)
            if not as_json:
                click.echo(run.id)
            if existing is not None:
                click.echo(f"run {run.id} already exists ({existing.status})", err=True)
            elif not wait:
                click.echo(
                    f"started {wf.name} run {run.id}: a worker executes it "
                    f"(durable worker {module})",
                    err=True,
                )
            if wait:
                interrupted = wait_for_run(runtime, run.id, module, timeout, as_json)
        record = _get(runtime.world, run.id)
        if as_json:
            echo_json({**run_json(record, detail=wait), "created": existing is None})
        elif wait and record.status == "completed":
            click.echo(json.dumps(run_json(record, detail=True)["result"], ensure_ascii=False))
        if interrupted:
            ctx.exit(INTERRUPTED)
        if as_json and wait and record.status != "completed":
            ctx.exit(1)
    finally:
        runtime.stop()
        runtime.world.close()


def wait_for_run(
    runtime: Runtime, run_id: str, module: str, timeout: float | None, quiet: bool
) -> bool:
    """Execute the run here until it finishes; returns whether Ctrl-C stopped the wait.

    Raises:
        click.ClickException: the run failed, or ``timeout`` passed (unless ``quiet``: --json
            prints the run's document instead).
        WorkflowCancelled: the run was cancelled (unless ``quiet``).
    """
    hint = f"durable worker {module}"
    driver = RunDriver(runtime, run_id, hint)

    def at_once() -> None:
        exit_at_once(taken_over(driver.executing()))

    with stop_on_signals(driver.interrupt, at_once) as stopping:
        ending = driver.drive(timeout)
        stopping.set()  # from here on, Ctrl-C stops at once
        if ending != "finished":
            driver.finish("interrupted" if ending == "interrupted" else f"{timeout:g} s passed")
    record = _get(runtime.world, run_id)
    if record.status in FINISHED_STATUSES:
        ending = "finished"  # its last step was in flight: the run ended meanwhile
    if ending == "interrupted":
        state = driver.waiting_line(record) if record.status == "suspended" else record.status
        click.echo(
            f"interrupted: run {run_id} stays {state}; a worker continues it ({hint})", err=True
        )
        return True
    if ending == "timeout":
        message = (
            f"run {run_id} is still {record.status} after {timeout:g} s; a worker can finish it "
            f"({hint}; follow it with `durable inspect {run_id}`)"
        )
        if not quiet:
            raise click.ClickException(message)
        click.echo(f"Error: {message}", err=True)  # --json: the run's document follows on stdout
        return False
    try:
        outcome_of(record)
    except WorkflowFailed as exc:
        if not quiet:
            raise click.ClickException(_failure_line(exc)) from None
    except WorkflowCancelled:
        if not quiet:
            raise
    return False


_ERROR_LIMIT = 1000
"""Characters of a failed run's error printed by ``start --wait`` (a message may be megabytes)."""


def _failure_line(exc: WorkflowFailed) -> str:
    whole = f"`durable inspect {exc.run_id}` or `durable events {exc.run_id} --json`"
    error = shorten(f"{exc.error_type}: {exc.error_message}", _ERROR_LIMIT, whole)
    return f"run {exc.run_id} failed: {error}"


@click.command()
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option(
    "--workflow",
    help="Only runs of this workflow (its registered name), or of the DAG spec of this name.",
)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Show at most this many runs (the newest); a footer says when more match.",
)
@json_option
@click.pass_context
def runs(
    ctx: click.Context, status: str | None, workflow: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first.

    --json adds "truncated" (more runs match than --limit let through) and "total" (how many
    runs match; null when not counted, with --workflow).
    """
    with opened_world(ctx) as world:
        # One more than asked for: whether any run was left out, without counting them all.
        records = _listed(world, status, workflow, limit + 1)
        truncated = len(records) > limit
        records = records[:limit]
        total = _matching(world, status, workflow, len(records), truncated)
        now = world.now()
        url = world.url
        location = world_location(world)
        waits = {} if as_json else run_waits(world, records)  # what suspended runs wait for
    if as_json:
        runs_doc = [run_json(r) for r in records]
        echo_json({"world": url, "runs": runs_doc, "truncated": truncated, "total": total})
        return
    if not records:
        click.echo(f"no runs{' matching' if status or workflow else ''} in {location}")
        return
    show(runs_table(records, now, waits), *_more_runs(len(records), total, truncated))


def _listed(
    world: World, status: str | None, workflow: str | None, limit: int
) -> list[RunRecord]:
    """The newest runs, newest first, of ``workflow``: a registered name or a DAG spec's name."""
    records = world.list_runs(status=status, workflow_name=workflow, limit=limit)
    if workflow is not None and workflow != DAG_WORKFLOW:
        records = _with_dag_runs(world, records, status, workflow, limit)
    return records


def _with_dag_runs(
    world: World, records: list[RunRecord], status: str | None, name: str, limit: int
) -> list[RunRecord]:
    """``records`` and the newest DAG runs whose spec is called ``name``, newest first."""
    scanned = world.list_runs(status=status, workflow_name=DAG_WORKFLOW, limit=_DAG_RUNS_SCANNED)
    named = [r for r in scanned if dag_name(r) == name]
    if not named:
        return records
    return sorted([*records, *named], key=lambda r: r.created_at, reverse=True)[:limit]


_DAG_RUNS_SCANNED = 2000  # the newest DAG runs --workflow looks among for a spec name


def _matching(
    world: World, status: str | None, workflow: str | None, shown: int, truncated: bool
) -> int | None:
    """How many runs match the filters; counted only when some were left out."""
    if not truncated:
        return shown
    if workflow is not None:
        return None  # worlds count runs by status only
    counts = world.count_runs()
    total = counts.get(status, 0) if status is not None else sum(counts.values())
    return max(total, shown + 1)  # a run may have finished between the listing and the count


def _more_runs(shown: int, total: int | None, truncated: bool) -> list[Text]:
    """The footer under a table that --limit cut short."""
    if not truncated:
        return []
    if total is None:
        return [Text(f"the newest {shown} runs shown; more match: use a higher --limit")]
    return [Text(f"{shown} of {total} runs shown; use --limit {total} to see them all")]


@click.command()
@click.argument("run_id")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"Every operation, one timeline row each (past {OPERATIONS_SHOWN} operations only the "
    "first, the last, and those that failed or retried are shown).",
)
@json_option
@click.pass_context
def inspect(ctx: click.Context, run_id: str, show_all: bool, as_json: bool) -> None:
    """Show a run: its steps in order (status, attempts, duration, errors), sleeps and timeline.

    For a DAG run (`durable dag run`), a table of its nodes in wave order comes first.

    Durations are measured between recorded events; they include time the run waited for a
    worker.
    """
    with opened_world(ctx) as world:
        record = _get(world, run_id)
        log = world.read_events(run_id)
        now = world.now()
        links = _links(world, record, log)
        children = child_records(world, record, log)
    timeline = build_timeline(record, log, now)
    nodes = dag_nodes(record, log, timeline, children)
    if as_json:
        doc = {**timeline_json(record, timeline), **links}
        if nodes is not None:
            doc["nodes"] = [node_json(n) for n in nodes]
        echo_json(doc)
        return
    limit = None if show_all else OPERATIONS_SHOWN
    parts: list[RenderableType] = [run_header(record, timeline, now), Text("")]
    lines = _worker_line(record, now) + _link_lines(links)
    if lines:
        parts += [Text("\n".join(lines)), Text("")]
    if nodes:
        parts += [Text("nodes", style="bold"), nodes_table(nodes), Text("")]
    if timeline.operations:
        parts += [operations_table(timeline, limit), Text(""), Text("timeline", style="bold")]
    parts.append(timeline_chart(timeline, min(console().width, 140), limit))
    show(*parts)


def _links(world: World, record: RunRecord, log: list[Event]) -> dict[str, Any]:
    """The run's parent, children, live hooks and streams, as stable JSON."""
    children = []
    for child_id in child_ids(log):
        child = world.get_run(child_id)
        children.append({"id": child_id, "status": child.status if child else "missing"})
    return {
        "parent_id": record.parent_id,
        "children": children,
        "hooks": [
            {
                "token": h.token,
                "op_id": h.op_id,
                "timeout_at": iso(h.timeout_at),
                "received": sum(1 for e in log if e.kind == "hook_received" and e.op_id == h.op_id),
            }
            for h in world.list_hooks(record.id)
        ],
        "streams": [
            {"name": s.name, "chunks": s.length, "closed": s.closed}
            for s in world.list_streams(record.id)
        ],
    }


def _worker_line(record: RunRecord, now: float) -> list[str]:
    waiting = worker_wait(record, now)
    if waiting is None:
        return []
    note, since = waiting
    how_long = (
        f"pending for {format_duration(now - since)}"
        if record.status == "pending"
        else f"due {format_ago(since, now)}"
    )
    return [f"waiting   {note.removeprefix('waiting ')} ({how_long})"]


def _link_lines(links: dict[str, Any]) -> list[str]:
    lines = []  # (the parent is in the run's summary above)
    for child in links["children"]:
        lines.append(f"child     {child['id']} ({child['status']})")
    for hook in links["hooks"]:
        timeout_at = hook["timeout_at"]  # ISO 8601 for --json; people get the table's format
        until = (
            f", times out {format_local(datetime.fromisoformat(timeout_at).timestamp())}"
            if timeout_at
            else ""
        )
        had = hook["received"]
        state = f"open, {had} payload{'s' if had > 1 else ''} received" if had else "waiting"
        lines.append(f"hook      {hook['token']} ({state}{until})")
    for stream in links["streams"]:
        state = "closed" if stream["closed"] else "open"
        lines.append(f"stream    {stream['name']}: {stream['chunks']} chunks, {state}")
    return lines


@click.command()
@click.argument("run_id")
@click.option("--after", default=0, type=click.IntRange(min=0), help="Only events after this seq.")
@json_option
@click.pass_context
def events(ctx: click.Context, run_id: str, after: int, as_json: bool) -> None:
    """Print a run's event log, oldest first."""
    with opened_world(ctx) as world:
        record = _get(world, run_id)
        log = world.read_events(run_id, after)
    if as_json:
        echo_json({"run_id": run_id, "events": [event_json(e) for e in log]})
        return
    show(events_table(log, record.created_at))


@click.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@click.option(
    "--force",
    is_flag=True,
    help="Cancel a started run at once, without its undo steps, if no live worker holds it (its "
    "worker died, or no worker has its workflow's code); a run a live worker holds still stops at "
    "its next durable point.",
)
@json_option
@click.pass_context
def cancel(ctx: click.Context, run_ids: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Cancel runs.

    A run that has not started is cancelled at once. A run that has started stops at its next
    durable point on a worker (its next step, sleep, hook or its outcome), after running its
    saga's undo steps, and ends cancelled. --force cancels at once, without undo steps, a run no
    live worker holds. With --json and several ids, one object per run, one per line. An id
    with no run is reported and the others are still cancelled (exit 1).
    """
    missing: list[str] = []
    with opened_world(ctx) as world:
        for run_id in dict.fromkeys(run_ids):
            try:
                _cancel_one(world, run_id, force, as_json, many=len(run_ids) > 1)
            except RunNotFound as exc:
                if len(run_ids) == 1:
                    raise
                missing.append(run_id)
                click.echo(f"Error: {exc}", err=True)
    if missing:
        ctx.exit(1)


def _cancel_one(world: World, run_id: str, force: bool, as_json: bool, many: bool) -> None:
    before = _get(world, run_id)
    if before.status in FINISHED_STATUSES:
        outcome, record = "already_finished", before
    else:
        outcome, record = _cancel(world, run_id, force)
    holder = _live_holder(record, world.now())
    if as_json:
        shown = {**run_json(record), "outcome": outcome}
        if many:  # one line per run
            click.echo(json.dumps(shown, ensure_ascii=False))
        else:
            echo_json(shown)
    elif outcome == "cancelled":
        click.echo(f"cancelled run {run_id}")
    elif outcome == "already_finished":
        click.echo(f"run {run_id} already {record.status}; nothing to cancel")
    else:
        click.echo(_requested_message(run_id, holder, force))


@click.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "--failed",
    "all_failed",
    is_flag=True,
    help="Every failed run (with --workflow, of that workflow), newest first, up to --limit.",
)
@click.option(
    "--workflow",
    help="With --failed: only runs of this workflow (its registered name), or of the DAG spec "
    "of this name.",
)
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1),
    help="With --failed: retry at most this many runs.",
)
@json_option
@click.pass_context
def retry(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    all_failed: bool,
    workflow: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Run failed runs again, from where they failed.

    Their finished steps are not run again: the step whose failure failed a run runs again (from
    its first attempt), then the workflow goes on. A run failed by a NonDeterminismError replays
    with the code the workers have now. Each run becomes pending: a worker that has its workflow
    executes it. With several runs (or --failed), one refused (it compensated, say) is reported
    and the others are retried; the exit status is then 1. --json prints
    {"retried": [ids], "refused": [{"id", "reason"}]} however many runs were named.
    """
    if not run_ids and not all_failed:
        raise click.UsageError("name the runs to retry, or give --failed")
    if workflow is not None and not all_failed:
        raise click.UsageError("--workflow selects runs with --failed; give --failed too")
    owner = f"cli-{os.getpid()}"
    with opened_world(ctx) as world:
        ids = list(run_ids)
        if all_failed:
            failed = _listed(world, "failed", workflow, limit)
            ids += [r.id for r in failed if r.parent_id is None and r.id not in ids]
        if len(ids) == 1 and run_ids and not as_json:
            # One named run: a refusal is the error of the command (on stderr), as it always was.
            click.echo(_retrying_line(_retry_one(world, ids[0], owner)))
            return
        retried: list[RunRecord] = []
        refused: list[tuple[str, str]] = []
        for run_id in ids:
            try:
                retried.append(_retry_one(world, run_id, owner))
            except DurableError as exc:
                refused.append((run_id, str(exc)))
    if as_json:
        echo_json({
            "retried": [r.id for r in retried],
            "refused": [{"id": run_id, "reason": why} for run_id, why in refused],
        })
    else:
        for record in retried:
            click.echo(_retrying_line(record))
        if not ids:
            click.echo(f"no failed runs{f' of {workflow}' if workflow else ''} to retry")
        for run_id, why in refused:
            click.echo(f"not retried: {run_id}: {why}", err=True)
    if refused:
        ctx.exit(1)


def _retrying_line(record: RunRecord) -> str:
    return f"retrying run {record.id}: pending for a worker of {record.workflow_name}"


def _retry_one(world: World, run_id: str, owner: str) -> RunRecord:
    try:
        retry_run(world, run_id, owner, lease_ttl=30.0)
    finally:
        world.release(run_id, owner)
    return _get(world, run_id)


def _cancel(world: World, run_id: str, force: bool) -> tuple[str, RunRecord]:
    outcome = cancel_run(world, run_id, force=force)
    return outcome, _get(world, run_id)


def _live_holder(record: RunRecord, now: float) -> str | None:
    """The worker whose lease on a running run has not lapsed: only it may end the run."""
    expires = record.lease_expires_at
    if record.status != "running" or expires is None or expires <= now:
        return None
    return record.lease_owner


_STOPS = (
    "at its next durable point (its next step, sleep, hook or its outcome), after its undo steps"
)


def _requested_message(run_id: str, holder: str | None, force: bool) -> str:
    if holder is None:
        return (
            f"asked run {run_id} to stop: a worker running its workflow cancels it {_STOPS}; "
            "--force cancels it now, without undo steps"
        )
    # Only the lease holder may end the run, so --force cannot help here: say so, not suggest it.
    if force:
        return (
            f"run {run_id} is held by live worker {holder}, so --force cannot cancel it at once: "
            f"asked it to stop instead; {holder} cancels it {_STOPS}"
        )
    return f"asked run {run_id} to stop: {holder}, which is running it, cancels it {_STOPS}"


@click.command()
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help='Remove finished runs last changed longer ago than this: "30d", "12h", "90m", '
    '"1h30m", "7 days", or seconds.',
)
@click.option("--dry-run", is_flag=True, help="Only say which runs would be removed.")
@click.option(
    "--compact",
    is_flag=True,
    help="SQLite: then shrink the file (VACUUM). Writers wait meanwhile; needs free disk "
    "about the size of the data.",
)
@json_option
@click.pass_context
def gc(
    ctx: click.Context, older_than: str, dry_run: bool, compact: bool, as_json: bool
) -> None:
    """Delete finished runs (completed, failed, cancelled) and their events after a while.

    A child run whose parent is still going stays: the parent reads its outcome. The space
    they took is reused by new runs; --compact also gives it back to the file system.
    """
    seconds = _parse_age(older_than, "--older-than")
    sizes: tuple[int, int] | None = None
    with opened_world(ctx) as world:
        shrink = getattr(world, "compact", None)
        if compact and shrink is None:
            raise click.UsageError(
                f"--compact applies to a SQLite world only; {world.url} gives the space of "
                "deleted runs back by itself"
            )
        cutoff = world.now() - seconds
        doomed = _doomed(world, cutoff) if dry_run else []
        # Measured first: deleting writes to the log, whose copy back may already shrink it.
        measure = getattr(world, "bytes_on_disk", None)
        before = measure() if compact and measure is not None else None
        deleted = 0 if dry_run else world.delete_runs(cutoff)
        if compact and not dry_run and shrink is not None:
            sizes = shrink()
            if before is not None:
                sizes = (before, sizes[1])
    age = f"older than {_short_duration(seconds)} (last changed before {format_local(cutoff)})"
    if as_json:
        doc: dict[str, Any] = {
            "deleted": deleted,
            "older_than_seconds": seconds,
            "cutoff": iso(cutoff),
            "dry_run": dry_run,
        }
        if sizes is not None:
            doc["bytes_before"], doc["bytes_after"] = sizes
        if dry_run:
            doc["would_delete"] = [
                {"id": r.id, "workflow": r.workflow_name, "status": r.status} for r in doomed
            ]
        echo_json(doc)
        return
    if not dry_run:
        click.echo(f"deleted {deleted} finished {_runs_noun(deleted)} {age}")
        if sizes is not None:
            click.echo(
                f"compacted the database: {format_size(sizes[0])} -> {format_size(sizes[1])}"
            )
        return
    by_status = Counter(r.status for r in doomed)
    split = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    click.echo(
        f"would delete {len(doomed)} finished {_runs_noun(len(doomed))} {age}"
        + (f": {split}" if split else "")
        + "; nothing deleted (--dry-run)"
    )
    for record in doomed[:_DRY_RUN_LISTED]:
        click.echo(f"  {record.id}  {record.workflow_name}  {record.status}")
    if len(doomed) > _DRY_RUN_LISTED:
        click.echo(f"  … and {len(doomed) - _DRY_RUN_LISTED} more (--json lists them all)")


_DRY_RUN_LISTED = 20
"""Runs ``gc --dry-run`` names in its text output."""


def _parse_age(text: str, option: str) -> float:
    """Seconds from a duration given on the command line.

    Raises:
        click.ClickException: not a duration; says which forms are (durable's own message
            also offers a timedelta, which a command line cannot pass).
    """
    try:
        return parse_duration(text)
    except InvalidDuration:
        raise click.ClickException(
            f'{option}: invalid duration "{text}": use a number and a unit, such as 30d, 12h, '
            '90m, 1h30m or "7 days" (units: ms, s, m, h, d, w), or a number of seconds'
        ) from None


def _short_duration(seconds: float) -> str:
    """A duration in the form --older-than takes: ``30d``, ``12h``, ``1h30m``, ``45s``."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    rest = whole + (seconds - int(seconds))
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _runs_noun(count: int) -> str:
    return "run" if count == 1 else "runs"


def _doomed(world: World, cutoff: float) -> list[RunRecord]:
    """The runs ``World.delete_runs(cutoff)`` would remove, newest first."""
    counts = world.count_runs()
    parents: dict[str, bool] = {}  # parent id -> finished (or gone)
    doomed: list[RunRecord] = []
    for status in sorted(FINISHED_STATUSES):
        count = counts.get(status, 0)
        for record in world.list_runs(status=status, limit=count) if count else []:
            if record.updated_at >= cutoff:
                continue
            parent = record.parent_id
            if parent is not None and parent not in parents:
                found = world.get_run(parent)
                parents[parent] = found is None or found.status in FINISHED_STATUSES
            if parent is None or parents[parent]:
                doomed.append(record)
    return sorted(doomed, key=lambda r: r.created_at, reverse=True)


@click.group()
def world() -> None:
    """Inspect the world (where runs are stored)."""


@world.command()
@json_option
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Which world this is, where it lives and how many runs it holds by status."""
    problem: str | None = None
    with opened_world(ctx, may_be_new=True) as opened:
        url = opened.url
        location = getattr(opened, "path", None)
        # A world without a file (AWS) says where its resources are instead, and shows that
        # also when they are missing: it is how one finds out which prefix and region were used.
        where = _marking_missing(opened, _location(opened))
        try:
            counts = opened.count_runs()
        except WorldError as exc:
            counts, problem = {}, str(exc)
        measure = getattr(opened, "bytes_on_disk", None)
        size: int | None = measure() if measure is not None else None
    path = str(location) if location is not None else None
    by_status: dict[str, int] = {status: counts.get(status, 0) for status in RUN_STATUSES}
    by_status.update({k: v for k, v in counts.items() if k not in by_status})
    if as_json:
        echo_json(
            {
                "url": url,
                "backend": url.partition("://")[0],
                "path": path,
                "location": where,
                "size_bytes": size,
                "runs": by_status,
                "total_runs": sum(by_status.values()),
                "error": problem,
            }
        )
    else:
        show(world_table(url, path, size, by_status, where))
    if problem is not None:
        raise click.ClickException(problem)


def _location(opened: World) -> dict[str, str] | None:
    try:
        return opened.location() if hasattr(opened, "location") else None
    except WorldError:
        return None


def _marking_missing(opened: World, where: dict[str, str] | None) -> dict[str, str] | None:
    """``where`` with ``(missing)`` after each resource that does not exist, if it can tell."""
    if where is None or not hasattr(opened, "missing_resources"):
        return where
    try:
        missing = opened.missing_resources()
    except WorldError:
        return where
    return {k: f"{v} (missing)" if k in missing else v for k, v in where.items()}
