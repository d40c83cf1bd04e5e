"""Replay as a pure function of (workflow, input, event log)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from durable._context import Frame, current_frame
from durable._control import Cancelled, Suspend
from durable._engine import Diverged, RunContext, StepCommand
from durable._log_check import check_log
from durable._tasks import install_task_factory, wait_for_branches
from durable._timeouts import run_coroutine
from durable.world import Event, NewEvent


@dataclass
class ReplayResult:
    """What replaying a log produced.

    ``status`` is ``completed`` (``result`` holds the return value), ``failed`` (``error``
    holds the exception), ``suspended`` (``commands`` lists the steps to execute next, and
    ``wake_at`` the earliest timer, if any) or ``cancelled``.
    """

    status: Literal["completed", "failed", "suspended", "cancelled"]
    result: Any = None
    error: BaseException | None = None
    commands: list[StepCommand] = field(default_factory=list)
    wake_at: float | None = None
    new_events: list[NewEvent] = field(default_factory=list)


def replay(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    events: Sequence[Event] = (),
    *,
    now: float | None = None,
    run_id: str = "replay",
) -> ReplayResult:
    """Replay a workflow function against an event log, performing nothing.

    Recorded operations return their recorded outcomes; the first operation the log lacks
    becomes a command and the replay suspends there. Divergence raises
    :class:`~durable.NonDeterminismError`; a log no world could have recorded (events out of
    order, an unknown kind, an operation's event without its op_id or name, data that does not
    decode) raises :class:`~durable.InvalidEventLog` naming the event, before any code runs.

    Args:
        fn: the workflow function (the undecorated function or the ``@workflow`` object).
        args: its positional arguments.
        kwargs: its keyword arguments.
        events: the recorded log (as ``World.read_events`` returns it).
        now: the clock, for deciding whether recorded sleeps are over (default: real time,
            or the time of the log's last event if that is later).
        run_id: the run id exposed to the code.
    """
    check_log(events)
    target = getattr(getattr(fn, "definition", None), "fn", fn)
    is_async = asyncio.iscoroutinefunction(target)
    fixed = now
    # Events recorded after a sleep prove it ended, on whatever clock recorded them (a test
    # world's skips ahead of the wall clock).
    latest = max((event.created_at for event in events), default=0.0)
    clock: Callable[[], float] = (
        (lambda: max(time.time(), latest)) if fixed is None else (lambda: fixed)
    )
    ctx = RunContext(
        run_id=run_id,
        workflow_name=getattr(target, "__qualname__", "workflow"),
        is_async=is_async,
        recorder=None,
        clock=clock,
    )
    ctx.load(list(events))
    # An async workflow's frame is set in its own task only: asyncio.run's closing tasks
    # (shutdown_asyncgens) would otherwise take operation ids and hide a divergence behind one.
    token = current_frame.set(None if is_async else Frame(ctx, ctx.root))
    try:
        if is_async:
            result = run_coroutine(_run_async(ctx, target, tuple(args), kwargs or {}))
        else:
            result = target(*args, **(kwargs or {}))
        stopped = ctx.unwinding or ctx.root.stopped
        if stopped is not None:  # a branch (or the workflow) suspended and the workflow ignored it
            raise stopped
        ctx.check_fully_replayed()
    except BaseException as exc:  # noqa: BLE001 - what is not an outcome is raised again
        return _ended(ctx, ctx.ending(exc))
    finally:
        current_frame.reset(token)
    return ReplayResult("completed", result=result, new_events=ctx.new_events)


def _ended(ctx: RunContext, exc: BaseException) -> ReplayResult:
    if isinstance(exc, Diverged):
        raise exc.error from None
    if isinstance(exc, Cancelled):
        return ReplayResult("cancelled", new_events=ctx.new_events)
    if isinstance(exc, Suspend):
        waits = [w for w in ctx.waits if w is not None]
        return ReplayResult(
            "suspended",
            commands=ctx.commands,
            wake_at=min(waits) if waits else None,
            new_events=ctx.new_events,
        )
    if isinstance(exc, Exception):
        return ReplayResult("failed", error=exc, new_events=ctx.new_events)
    raise exc


async def _run_async(
    ctx: RunContext, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    install_task_factory(asyncio.get_running_loop())
    ctx.task = asyncio.current_task()
    current_frame.set(Frame(ctx, ctx.root))  # this task's context only
    try:
        return await fn(*args, **kwargs)
    finally:
        await wait_for_branches(ctx)
