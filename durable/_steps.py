"""Running a step durably inside a workflow (sync and async), with retries."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from durable._coerce import recorded_result
from durable._context import current_frame
from durable._engine import RunContext, enter_step, exit_step
from durable._errors import LeaseLost
from durable._streams import end_step_streams
from durable._tasks import own_coroutine
from durable._timeouts import call_with_timeout, in_daemon_thread, run_awaitable

if TYPE_CHECKING:
    from durable._decorators import StepDefinition


_STEP_THREADS = 64
"""Threads running the ``def`` steps of async workflows, shared by every run in the process.

Not the event loop's default executor: it has only min(32, CPUs + 4) threads (a ``map`` of
blocking steps would run a few at a time), and the app needs it too (``getaddrinfo``). A sync
workflow's ``parallel()``/``map()`` has threads of its own instead, up to ``_SYNC_BRANCH_LIMIT``
(32) per group. A ``def`` step with a ``timeout`` gets a thread of its own (it may be left
behind).
"""

_step_pool: ThreadPoolExecutor | None = None
_step_pool_lock = threading.Lock()


def _step_threads() -> ThreadPoolExecutor:
    global _step_pool
    pool = _step_pool
    if pool is None:
        with _step_pool_lock:
            if _step_pool is None:
                _step_pool = ThreadPoolExecutor(_STEP_THREADS, thread_name_prefix="durable-step")
            pool = _step_pool
    return pool


def _forget_step_threads() -> None:
    # A forked child has none of its parent's threads: the pool would wait for them for ever.
    global _step_pool, _step_pool_lock
    _step_pool, _step_pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_step_threads)


def call_step(step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Entry point of every step call: plain call outside workflows, durable inside."""
    frame = current_frame.get()
    if frame is None:
        return step.fn(*args, **kwargs)
    ctx = frame.ctx
    op_id = frame.branch.next_op()
    if ctx.is_async:
        # The id is taken now, at call time, so asyncio.gather over steps gets ids in call order.
        return ctx.hand_out(_run_async(ctx, op_id, step, args, kwargs), f"step {step.name!r}")
    event = ctx.lookup(op_id, "step", step.name)
    if event is not None:
        return recorded_result(step.fn, ctx.step_outcome(event))
    return _run_sync(ctx, op_id, step, args, kwargs)


def _run_sync(
    ctx: RunContext, op_id: str, step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    attempt, retry_at = ctx.begin_step(op_id, step, args, kwargs)
    kept = ctx.result_kept(op_id, step)
    if kept is not None:
        return ctx.step_succeeded_before(kept)
    while True:
        if retry_at is not None:
            ctx.wait_until(retry_at)
        info = ctx.step_info(op_id, step, attempt)
        tokens = enter_step(info, ctx)
        try:
            if step.timeout is not None:
                result = call_with_timeout(step.fn, args, kwargs, step.timeout, step.timed_out)
            else:
                result = step.fn(*args, **kwargs)
                if step.is_async:
                    result = run_awaitable(result)
        except BaseException as exc:
            exit_step(tokens)
            if not attempt_failed(exc):
                raise
            end_step_streams(info, succeeded=False)  # streams: keep open for the retry
            retry_at = ctx.step_errored(op_id, step, attempt, exc)
            attempt += 1
            continue
        exit_step(tokens)
        end_step_streams(info, succeeded=True)  # streams: close the step's streams
        return ctx.step_succeeded(op_id, step, result)


async def _within(awaitable: Any, step: StepDefinition) -> Any:
    if step.timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, step.timeout)
    except TimeoutError:
        raise step.timed_out() from None


@own_coroutine
async def _run_async(
    ctx: RunContext, op_id: str, step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    event = ctx.lookup(op_id, "step", step.name)
    if event is not None:
        await ctx.in_log_order(event)
        return recorded_result(step.fn, ctx.step_outcome(event))
    await ctx.catch_up()
    attempt, retry_at = ctx.begin_step(op_id, step, args, kwargs)
    kept = ctx.result_kept(op_id, step)
    if kept is not None:
        return ctx.step_succeeded_before(kept)
    loop = asyncio.get_running_loop()
    while True:
        if retry_at is not None:
            await ctx.wait_until_async(retry_at)
        info = ctx.step_info(op_id, step, attempt)
        try:
            with ctx.awaiting_outside():
                if step.is_async:
                    tokens = enter_step(info, ctx)
                    try:
                        coro = step.fn(*args, **kwargs)
                        result = await _within(coro, step)
                    finally:
                        exit_step(tokens)
                else:
                    context = contextvars.copy_context()
                    context.run(enter_step, info, ctx)
                    call = functools.partial(context.run, step.fn, *args, **kwargs)
                    if step.timeout is None:
                        result = await loop.run_in_executor(_step_threads(), call)
                    else:  # a thread cannot be interrupted: one past its time is left behind
                        result = await _within(in_daemon_thread(loop, call), step)
        except BaseException as exc:
            if not attempt_failed(exc, in_coroutine=True):
                raise
            end_step_streams(info, succeeded=False)  # streams: keep open for the retry
            retry_at = ctx.step_errored(op_id, step, attempt, exc)
            attempt += 1
            continue
        end_step_streams(info, succeeded=True)  # streams: close the step's streams
        return ctx.step_succeeded(op_id, step, result)


def attempt_failed(exc: BaseException, *, in_coroutine: bool = False) -> bool:
    """Whether an exception out of step (or workflow) code is that code's failure.

    ``SystemExit`` and ``KeyboardInterrupt`` are too when raised outside the main thread: there
    only code raises them (a library calling ``sys.exit()``), and they would end the thread
    silently, leaving the run leased for ever. In the main thread they stop the process.
    ``asyncio.CancelledError`` is unless this task is being cancelled (libraries leak their own),
    and ``GeneratorExit`` is outside a coroutine (in one, it means the coroutine is closed).
    ``LeaseLost`` (a stream write found another worker holding the run) is not: nothing more may
    be recorded here, least of all a failure that a replay would raise again.
    """
    if isinstance(exc, LeaseLost):
        return False
    if isinstance(exc, Exception):
        return True
    if isinstance(exc, asyncio.CancelledError):
        return not _task_cancelling()
    if isinstance(exc, GeneratorExit):
        return not in_coroutine
    return isinstance(exc, (SystemExit, KeyboardInterrupt)) and (
        threading.current_thread() is not threading.main_thread()
    )


def _task_cancelling() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return False
    return task is not None and task.cancelling() > 0
