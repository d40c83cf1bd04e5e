"""Deterministic branches for asyncio tasks created inside async workflows.

``asyncio.gather(branch_a(), branch_b())`` wraps each coroutine in a task. A task factory gives
each such task its own :class:`~durable._context.Branch`, numbered in creation order (which is
deterministic), so step ids inside it do not depend on which task runs first. A task that
suspends is held until the rest of the run waits too (see ``RunContext.hold``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from durable._context import Branch, Frame, current_frame
from durable._control import Suspend
from durable._engine import RunContext, control_flow
from durable._errors import ConfigurationError

T = TypeVar("T")

_INSTALLED = "_durable_task_factory"
_OWN_CODE: set[Any] = set()


def own_coroutine(fn: Any) -> Any:
    """Mark an ``async def`` of the engine whose tasks need no branch of their own.

    A step awaited through ``asyncio.gather`` already took its id when it was called.
    """
    _OWN_CODE.add(fn.__code__)
    return fn


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Install the branch-assigning task factory on ``loop`` (once; wraps any existing one)."""
    previous = loop.get_task_factory()
    if getattr(previous, _INSTALLED, False):
        return

    def factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        frame = current_frame.get()
        if frame is not None and type(coro).__name__ == "async_generator_athrow":
            # An async generator the workflow left unfinished, closed by the event loop when
            # it was dropped: at a moment no replay repeats, so its finally may record nothing.
            kwargs["context"] = _closing_context(frame)
        elif (
            frame is not None
            and kwargs.get("context") is None
            and getattr(coro, "cr_code", None) not in _OWN_CODE
        ):
            kwargs["context"] = _branch_context(frame)
        inner = coro
        if frame is not None and isinstance(coro, types.CoroutineType):
            coro = _branch(frame.ctx, coro)
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if frame is not None:
            frame.ctx.spawned.append(task)
            task.add_done_callback(functools.partial(_note_outcome, frame.ctx, inner))
        return task

    setattr(factory, _INSTALLED, True)
    loop.set_task_factory(factory)


async def _branch(ctx: RunContext, coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    except BaseException as exc:
        if isinstance(control_flow(exc), Suspend):
            # Cancelled while held: a sibling failed; the suspension still wins (see ending).
            with contextlib.suppress(asyncio.CancelledError):
                await ctx.hold()
        raise


def _note_outcome(ctx: RunContext, inner: Any, task: asyncio.Future[Any]) -> None:
    if inspect.iscoroutine(inner) and inspect.getcoroutinestate(inner) == inspect.CORO_CREATED:
        # Cancelled before it started (a sibling in its TaskGroup failed): closed, as asyncio
        # closes a task's coroutine then, so that it is not reported as never awaited.
        inner.close()
    if not task.cancelled():
        ctx.note_unwinding(task.exception())


def _branch_context(frame: Frame) -> contextvars.Context:
    if frame.branch.stopped is not None:
        # Created while its branch unwinds (a finally, the event loop's own shutdown): it takes
        # no id, and may perform nothing durable either.
        branch = Branch(frame.branch.path)
        branch.stopped = frame.branch.stopped
    else:
        op_id = frame.branch.next_op()
        frame.ctx.group_at(op_id)
        branch = Branch(f"{op_id}.")
    context = contextvars.copy_context()
    context.run(current_frame.set, Frame(frame.ctx, branch))
    return context


def _closing_context(frame: Frame) -> contextvars.Context:
    branch = Branch(frame.branch.path)
    branch.stopped = ConfigurationError(
        "a durable call in the finally of an async generator the workflow left unfinished: it "
        "runs when the event loop closes the generator, at a moment a replay cannot repeat; "
        "close it in the workflow (await agen.aclose())"
    )
    context = contextvars.copy_context()
    context.run(current_frame.set, Frame(frame.ctx, branch))
    return context


async def wait_for_branches(ctx: RunContext) -> None:
    """Let tasks a run spawned finish (or suspend) before the run records how it ended."""
    while True:
        pending = [t for t in ctx.spawned if not t.done()]
        if not pending:
            break
        await asyncio.wait(pending)
    for task in ctx.spawned:
        if not task.cancelled():
            task.exception()  # marks it retrieved: the outcome already reached the workflow
