"""Calling functions under a time limit, and coroutines from sync code, in threads if need be."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def call_with_timeout(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    expired: Callable[[], TimeoutError],
) -> Any:
    """``fn(*args, **kwargs)``, raising ``expired()`` if it takes longer than ``timeout``.

    A coroutine function is cancelled when time runs out. A plain function runs in a thread of
    its own (with the caller's context variables, so ``step_info()`` works in it) since a thread
    cannot be interrupted: when time runs out it is left to finish in the background and its
    result is ignored.
    """
    if inspect.iscoroutinefunction(fn):
        try:
            return run_coroutine(asyncio.wait_for(fn(*args, **kwargs), timeout))
        except TimeoutError:
            raise expired() from None
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = run_awaitable(result)
            outcome.append(result)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    context = contextvars.copy_context()
    name = f"durable-timed-{getattr(fn, '__name__', 'call')}"
    thread = threading.Thread(target=context.run, args=(target,), daemon=True, name=name)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise expired()
    if failure:
        raise failure[0]
    return outcome[0]


def run_awaitable(value: Any) -> Any:
    """Run an awaitable to completion from sync code (in an event loop of its own)."""
    return run_coroutine(_await(value))


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, on a helper thread if this thread runs an event loop already.

    A sync workflow called from an async function (a web handler, a notebook) executes in the
    loop's thread, where ``asyncio.run`` refuses to start another loop; the helper thread gets
    the caller's context variables, so ``step_info()`` works in the coroutine. The caller's
    loop is blocked meanwhile, as it is by the sync workflow's own code.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)

    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(target,), daemon=True, name="durable-async-step"
    )
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def _await(value: Any) -> Any:
    return await value


def in_daemon_thread(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Any]
) -> asyncio.Future[Any]:
    """Run ``call`` in a daemon thread of its own; a future of ``loop`` gets its outcome.

    For a timed call from a coroutine: one that runs out is abandoned, and unlike the loop's
    executor, nothing waits for an abandoned thread when the loop shuts down.
    """
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled: the timeout ran out first
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (call(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the future
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass

    threading.Thread(target=target, daemon=True, name="durable-timed-step").start()
    return future
