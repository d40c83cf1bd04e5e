"""Functions workflows call: sleeping, branching, and replay-stable values."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random as _random
import threading
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast, overload

from durable._context import Branch, Frame, StepInfo, current_frame, current_step, step_clock
from durable._control import Cancelled, StorageUnavailable, Suspend
from durable._durations import parse_duration, to_timestamp
from durable._engine import Diverged, RunContext
from durable._errors import ConfigurationError
from durable._tasks import own_coroutine

T = TypeVar("T")
U = TypeVar("U")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")

_SYNC_BRANCH_LIMIT = 32
"""Threads a sync workflow's parallel()/map() use at most when no max_concurrency is given."""


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- sleeping ----------------------------------------------------------------------------------


def sleep(duration: float | str | timedelta) -> Awaitable[None]:
    """Pause the workflow for a duration: seconds, a ``timedelta``, or ``"7 days"``, ``"1h30m"``.

    Short sleeps wait in-process; long ones suspend the run (holding no thread or task) and a
    worker resumes it when due. In async workflows, ``await`` it. Outside workflows it is a plain
    ``time.sleep`` (or ``asyncio.sleep`` when awaited in a running event loop). In sync code it
    has slept when it returns, and what it returns need not be awaited (awaiting it does nothing).

    Raises:
        ConfigurationError: called inside a step, which cannot suspend its run.
    """
    seconds = parse_duration(duration)
    return _sleep(seconds, None)


def sleep_until(when: datetime | float) -> Awaitable[None]:
    """Pause the workflow until a timezone-aware ``datetime`` (or epoch seconds).

    ``await`` it in async workflows; in sync code it returns once the time has come.
    """
    return _sleep(None, to_timestamp(when))


# In sync code a sleep has happened when it returns, and returns None, as it always has (a
# branch of parallel() that ends with one gives None, which is recorded). Its type is the async
# form's, so that `await durable.sleep(...)` type-checks; in sync code there is nothing to await.
_SLEPT = cast("Awaitable[None]", None)


def _sleep(seconds: float | None, until: float | None) -> Awaitable[None]:
    frame = current_frame.get()
    if frame is None:
        info = current_step.get()
        if info is not None:
            # A step runs to completion, so this could only block its thread (for days, and in
            # real time even in a time-skipping test world).
            pause = "await asyncio.sleep()" if _in_event_loop() else "time.sleep()"
            raise ConfigurationError(
                f"durable.sleep() inside step {info.name!r} cannot suspend the run: sleep "
                f"in the workflow between steps, or use {pause} for a short pause in the step"
            )
        delay = seconds if seconds is not None else max(0.0, (until or 0.0) - time.time())
        if _in_event_loop():
            return asyncio.sleep(delay)
        time.sleep(delay)
        return _SLEPT
    ctx = frame.ctx
    op_id = frame.branch.next_op()
    if ctx.is_async:
        call = _sleep_async(ctx, op_id, seconds, until)
        return ctx.hand_out(call, "durable.sleep()" if until is None else "durable.sleep_until()")
    ctx.wait_until(ctx.sleep_target(op_id, seconds, until))
    return _SLEPT


@own_coroutine
async def _sleep_async(
    ctx: RunContext, op_id: str, seconds: float | None, until: float | None
) -> None:
    await ctx.wait_until_async(ctx.sleep_target(op_id, seconds, until))


# -- replay-stable values ----------------------------------------------------------------------


def recorded_value(name: str, make: Callable[[], T]) -> T:
    """``make()``, recorded once under ``name`` inside a workflow and the same on replay."""
    frame = current_frame.get()
    if frame is None:
        return make()
    value: T = frame.ctx.value(frame.branch.next_op(), name, make)
    return value


def now() -> datetime:
    """The current time (UTC); inside a workflow, recorded once and the same on replay.

    Inside a step, the world's clock unrecorded (a test world's, which skips time).
    """
    frame = current_frame.get()
    clock = frame.ctx.clock if frame is not None else step_clock.get() or time.time
    stamp = recorded_value("now", clock)
    return datetime.fromtimestamp(stamp, tz=UTC)


def random() -> float:
    """A float in [0, 1); inside a workflow, recorded once and the same on replay."""
    return recorded_value("random", _random.random)


def uuid4() -> _uuid.UUID:
    """A random UUID; inside a workflow, recorded once and the same on replay."""
    return _uuid.UUID(recorded_value("uuid4", lambda: str(_uuid.uuid4())))


def step_info() -> StepInfo:
    """Information about the step being executed (its ids, attempt and idempotency key).

    Raises:
        ConfigurationError: called outside a step executing inside a workflow.
    """
    info = current_step.get()
    if info is None:
        raise ConfigurationError(
            "step_info() is only available inside a @step executing within a workflow (a "
            "thread the step starts does not inherit it: pass it the value of step_info())"
        )
    return info


# -- branching ---------------------------------------------------------------------------------


# Typed by what the callables return, as a step is (see Step.run_async): async callables (async
# steps, step.run_async, coroutine functions) give an awaitable of the results, the rest the
# results. A sync callable's group in an async workflow is an awaitable at run time too: type
# checkers reject ``await`` on it, which ``step.run_async`` spells in a way they accept. The
# overlaps are on purpose: the first overload that matches wins, async callables first.


@overload
def parallel(  # type: ignore[overload-overlap]
    a: Callable[[], Awaitable[A]],
    b: Callable[[], Awaitable[B]],
    /,
) -> Coroutine[Any, Any, list[A | B]]: ...


@overload
def parallel(
    a: Callable[[], A],
    b: Callable[[], B],
    /,
) -> list[A | B]: ...


@overload
def parallel(  # type: ignore[overload-overlap]
    a: Callable[[], Awaitable[A]],
    b: Callable[[], Awaitable[B]],
    c: Callable[[], Awaitable[C]],
    /,
) -> Coroutine[Any, Any, list[A | B | C]]: ...


@overload
def parallel(
    a: Callable[[], A],
    b: Callable[[], B],
    c: Callable[[], C],
    /,
) -> list[A | B | C]: ...


@overload
def parallel(  # type: ignore[overload-overlap]
    a: Callable[[], Awaitable[A]],
    b: Callable[[], Awaitable[B]],
    c: Callable[[], Awaitable[C]],
    d: Callable[[], Awaitable[D]],
    /,
) -> Coroutine[Any, Any, list[A | B | C | D]]: ...


@overload
def parallel(
    a: Callable[[], A],
    b: Callable[[], B],
    c: Callable[[], C],
    d: Callable[[], D],
    /,
) -> list[A | B | C | D]: ...


@overload
def parallel(  # type: ignore[overload-overlap]
    a: Callable[[], Awaitable[A]],
    b: Callable[[], Awaitable[B]],
    c: Callable[[], Awaitable[C]],
    d: Callable[[], Awaitable[D]],
    e: Callable[[], Awaitable[E]],
    /,
) -> Coroutine[Any, Any, list[A | B | C | D | E]]: ...


@overload
def parallel(
    a: Callable[[], A],
    b: Callable[[], B],
    c: Callable[[], C],
    d: Callable[[], D],
    e: Callable[[], E],
    /,
) -> list[A | B | C | D | E]: ...


@overload
def parallel(  # type: ignore[overload-overlap]
    a: Callable[[], Awaitable[A]],
    b: Callable[[], Awaitable[B]],
    c: Callable[[], Awaitable[C]],
    d: Callable[[], Awaitable[D]],
    e: Callable[[], Awaitable[E]],
    f: Callable[[], Awaitable[F]],
    /,
) -> Coroutine[Any, Any, list[A | B | C | D | E | F]]: ...


@overload
def parallel(
    a: Callable[[], A],
    b: Callable[[], B],
    c: Callable[[], C],
    d: Callable[[], D],
    e: Callable[[], E],
    f: Callable[[], F],
    /,
) -> list[A | B | C | D | E | F]: ...


@overload
def parallel(  # type: ignore[overload-overlap]
    *callables: Callable[[], Awaitable[T]],
) -> Coroutine[Any, Any, list[T]]: ...


@overload
def parallel(*callables: Callable[[], T]) -> list[T]: ...


def parallel(*callables: Callable[[], Any]) -> Any:
    """Run callables concurrently as branches and return their results in order.

    Each callable usually calls one or more steps (``lambda: charge(order)``). Step ids are
    scoped per branch, so replay does not depend on which branch finishes first. In async
    workflows, ``await`` the result. If branches fail, the first failure (in argument order) is
    raised after every branch has finished.

    Returns:
        A list of the results. Type checkers see a list for plain callables and an awaitable
        of the list for async ones; in async workflows give ``def`` steps as
        ``lambda: charge.run_async(order)`` so that ``await`` type-checks.
    """
    for position, fn in enumerate(callables, 1):
        if not callable(fn):
            for given in callables:  # never to be awaited: no "never awaited" warnings on top
                if inspect.iscoroutine(given):
                    given.close()
            if inspect.iscoroutine(fn):
                done = "a coroutine, which could not run its branch beside the others"
            else:
                done = "a result: my_step(x) has already run, one call after another"
            raise TypeError(
                f"durable.parallel() takes callables, but argument {position} is of type "
                f"{type(fn).__name__!r}: pass lambda: my_step(x), not my_step(x) ({done})"
            )
    return _branches(list(callables), None, "durable.parallel()")


@overload
def map(  # type: ignore[overload-overlap]  # noqa: A001 - async callables first, see parallel
    fn: Callable[[T], Awaitable[U]], items: Iterable[T], max_concurrency: int | None = None
) -> Coroutine[Any, Any, list[U]]: ...


@overload
def map(  # noqa: A001
    fn: Callable[[T], U], items: Iterable[T], max_concurrency: int | None = None
) -> list[U]: ...


def map(  # noqa: A001 - mirrors the builtin on purpose: durable.map
    fn: Callable[[T], Any], items: Iterable[T], max_concurrency: int | None = None
) -> Any:
    """Apply ``fn`` to each item concurrently (as branches); results come back in item order.

    Args:
        fn: called once per item, usually a step.
        items: the inputs.
        max_concurrency: how many branches run at once (default: all of them in async
            workflows, up to 32 threads in sync workflows).

    Returns:
        A list of the results (sync workflows); in async workflows, ``await`` it. Type
        checkers see a list for a plain ``fn`` and an awaitable of the list for an async one:
        in async workflows pass a ``def`` step as ``my_step.run_async``.

    Raises:
        TypeError: ``fn`` is not callable or ``items`` not iterable.
        ValueError: ``max_concurrency`` is not a whole number >= 1.
    """
    if not callable(fn):
        swapped = ", and the arguments look swapped" if callable(items) else ""
        raise TypeError(
            f"durable.map() takes a function, then the items to call it with, but its first "
            f"argument is of type {type(fn).__name__!r}{swapped}: pass the function itself, "
            "durable.map(my_step, items), not the result of a call, my_step(x)"
        )
    try:
        inputs = iter(items)
    except TypeError:
        raise TypeError(
            f"durable.map() takes the items as an iterable (a list, say), but got one of type "
            f"{type(items).__name__!r}: durable.map(my_step, [a, b, c])"
        ) from None
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError(
            f"max_concurrency must be a whole number >= 1 (or None: no limit), "
            f"got {max_concurrency!r}"
        )
    calls = [_bind(fn, item) for item in inputs]
    return _branches(calls, max_concurrency, "durable.map()")


def _bind(fn: Callable[[T], U], item: T) -> Callable[[], U]:
    return lambda: fn(item)


def _branches(calls: list[Callable[[], Any]], limit: int | None, what: str) -> Any:
    frame = current_frame.get()
    if frame is None:
        if _in_event_loop():
            return _gather_plain(calls, limit)
        return _run_threads(calls, limit, None, "")
    group = frame.branch.next_op()
    frame.ctx.group_at(group)
    # Each branch is a callable of its own: none can take another's results (unlike a DAG's
    # nodes), so a branch's step need not wait for its siblings' to be durable.
    frame.ctx.independent_groups.add(group)
    if frame.ctx.is_async:
        return frame.ctx.hand_out(_gather_branches(frame.ctx, group, calls, limit), what)
    return _run_threads(calls, limit, frame.ctx, group)


def _branch_context(ctx: RunContext | None, group: str, index: int) -> contextvars.Context:
    context = contextvars.copy_context()
    if ctx is not None:
        context.run(current_frame.set, Frame(ctx, Branch(f"{group}.{index}.")))
    return context


def _run_threads(
    calls: list[Callable[[], Any]], limit: int | None, ctx: RunContext | None, group: str
) -> list[Any]:
    contexts = [_branch_context(ctx, group, i) for i in range(len(calls))]
    outcomes: list[tuple[bool, Any]] = [(True, None)] * len(calls)
    stopping = _Stopping()
    indices = iter(range(len(calls)))
    lock = threading.Lock()

    def take() -> int | None:
        # Branches never started are left out: the group ends in control flow anyway.
        with lock:
            return None if stopping.now else next(indices, None)

    def drain() -> None:
        while (index := take()) is not None:
            try:
                outcomes[index] = (True, contexts[index].run(calls[index]))
            except BaseException as exc:  # noqa: BLE001 - re-raised in order below
                outcomes[index] = (False, exc)
                stopping.note(exc)
                if limit is not None and isinstance(exc, Suspend):
                    # The branch resumes later: its slot stays taken, or the group would run
                    # more than ``limit`` branches at once (each waiting on a hook, say).
                    return

    def serve() -> None:
        # A thread goes on with the next branch as soon as its own ends: a moment with no branch
        # running would look to a lingering one (see RunContext.linger) like every branch waits.
        try:
            drain()
        finally:
            if ctx is not None:
                ctx.branch_left()

    workers = min(len(calls), limit or _SYNC_BRANCH_LIMIT)
    if workers <= 1:
        drain()
        return _collect(outcomes)
    if ctx is not None:
        ctx.branches_start(workers)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="durable-branch") as pool:
            for _ in range(workers):
                pool.submit(serve)
    finally:
        if ctx is not None:
            ctx.branches_done()
    return _collect(outcomes)


class _Stopping:
    """Whether a group's branches not yet started must stay so.

    They must once the run must stop (cancelled, diverged, storage gone): the group ends in that
    control flow anyway.
    """

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = False

    def note(self, error: BaseException) -> None:
        if isinstance(error, (StorageUnavailable, Cancelled, Diverged)):
            self.now = True


def _collect(outcomes: list[tuple[bool, Any]]) -> list[Any]:
    errors = [value for ok, value in outcomes if not ok]
    # Engine control flow wins over user errors: a cancelled or diverged run must stop, and a
    # suspended branch must be resumed before the group's outcome is known.
    for kind in (StorageUnavailable, Cancelled, Diverged, Suspend):
        for error in errors:
            if isinstance(error, kind):
                frame = current_frame.get()
                if frame is not None and not isinstance(error, Cancelled):
                    frame.branch.stopped = error  # the branch that waited unwinds with it
                raise error
    if errors:
        raise errors[0]
    return [value for _, value in outcomes]


async def _gather_branches(
    ctx: RunContext, group: str, calls: list[Callable[[], Any]], limit: int | None
) -> list[Any]:
    loop = asyncio.get_running_loop()
    branch = _limited(limit)
    tasks = [
        loop.create_task(branch(call), context=_branch_context(ctx, group, index))
        for index, call in enumerate(calls)
    ]
    return await _await_all(tasks)


async def _gather_plain(calls: list[Callable[[], Any]], limit: int | None) -> list[Any]:
    branch = _limited(limit)
    return await _await_all([asyncio.ensure_future(branch(call)) for call in calls])


def _limited(
    limit: int | None,
) -> Callable[[Callable[[], Any]], Coroutine[Any, Any, Any]]:
    slots = _Slots(limit) if limit else None
    stopping = _Stopping()

    async def run(call: Callable[[], Any]) -> Any:
        if stopping.now:  # never started: the group ends in control flow anyway
            return None
        try:
            return await _maybe_await(call())
        except BaseException as exc:
            stopping.note(exc)
            raise

    async def branch(call: Callable[[], Any]) -> Any:
        if slots is None:
            return await run(call)
        if not await slots.take():
            return None  # every slot is held by a suspended branch: the group suspends
        suspended = False
        try:
            return await run(call)
        except Suspend:
            suspended = True
            raise
        finally:
            await slots.give_back(suspended)

    return branch


class _Slots:
    """``max_concurrency`` for async branches; a suspended branch keeps its slot.

    It resumes later, so giving its slot to another branch would run more than ``limit`` at
    once (each waiting on a hook, say). Branches that find every slot held by a suspended one
    do not start: the group suspends, and they start when the run resumes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.held = 0
        self.changed = asyncio.Condition()

    async def take(self) -> bool:
        async with self.changed:
            await self.changed.wait_for(
                lambda: self.running + self.held < self.limit or self.running == 0
            )
            if self.running + self.held >= self.limit:
                return False
            self.running += 1
            return True

    async def give_back(self, suspended: bool) -> None:
        async with self.changed:
            self.running -= 1
            self.held += suspended
            self.changed.notify_all()


async def _await_all(tasks: Sequence[asyncio.Future[Any]]) -> list[Any]:
    if tasks:
        await asyncio.wait(tasks)
    outcomes: list[tuple[bool, Any]] = []
    for task in tasks:
        error = task.exception()
        outcomes.append((False, error) if error is not None else (True, task.result()))
    return _collect(outcomes)


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value
