"""Compensation (the saga pattern): undo finished steps when a later part of a workflow fails.

Register an undo step after each forward step; if the block fails (an exception, including
:class:`~durable.HookTimeout`, or the run's cancellation), the undos run in reverse order, each
one a durable step call (recorded once, replayed afterwards), and the error is raised again::

    with durable.Saga() as saga:
        account = create_account(email)
        saga.add(delete_account, account.id)
        charge = charge_card(account.id, amount)
        saga.add(refund, charge)
        ship(account.id)            # raises: refund(charge), then delete_account(account.id)

Async workflows use ``async with durable.Saga() as saga:`` (the undos are awaited).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec

from durable._context import current_frame
from durable._control import Cancelled
from durable._decorators import Step
from durable._errors import ConfigurationError, DurableError, WorldError

P = ParamSpec("P")

_AFTER = float("inf")
"""Sorts a registration after every operation nested under the one it follows."""


class CompensationFailed(DurableError):
    """Undo steps of a :class:`Saga` failed (each after its retries); the rest still ran.

    Raised instead of the error that started the compensation, which is its ``__cause__``:
    something may now be left half undone and needs attention.

    Attributes:
        failures: one line per failed undo, ``"step_name: ErrorType: message"``.
        reason: the error that started the compensation, as ``"ErrorType: message"``
            (``None`` when :meth:`Saga.compensate` was called directly).
        errors: the undo steps' exceptions (only in the process that compensated).
    """

    errors: tuple[BaseException, ...] = ()

    def __init__(self, failures: list[str], reason: str | None = None) -> None:
        super().__init__(list(failures), reason)
        self.failures = list(failures)
        self.reason = reason

    def __str__(self) -> str:
        undone = "; ".join(self.failures)
        after = f" while compensating for {self.reason}" if self.reason else ""
        count = len(self.failures)
        return f"{count} undo step{'s' if count != 1 else ''} failed{after}: {undone}"


def cancelled_meanwhile() -> Cancelled | None:
    """``Cancelled`` if the run was cancelled while its code ran since its last durable point.

    Asked where no durable point follows before work is kept for good (a saga block ending, a
    DAG's last nodes ending): a cancel that came while the last step ran would otherwise end the
    run ``cancelled`` with nothing undone. Only a yes is recorded (a value at the next operation
    id), so that a replay takes the same path; a no records nothing and is answered only live
    (nothing recorded lies past this point), so that a replay never leaves the recorded path.
    """
    frame = current_frame.get()
    if frame is None or frame.ctx.compensating:
        return None
    ctx = frame.ctx
    if not ctx.cancel_marked_next(frame.branch):
        if any(op not in ctx.visited for op in ctx.recorded):
            return None  # replaying: the recorded execution went on from here
        if not ctx.ask_cancelled():
            return None
    return ctx.cancelled_here()


class Saga:
    """Undo steps to run, newest first, when the work they undo must be rolled back.

    Use it as a context manager (``with`` in sync workflows, ``async with`` in async ones): an
    exception leaving the block, or the run's cancellation, runs the registered undos and is
    then raised again. Or call :meth:`compensate` yourself. Leaving the block normally runs
    nothing and keeps the registrations (a later :meth:`compensate` still runs them).

    Each undo is a ``@step`` call, so it is recorded once and replayed on later executions like
    any step; it retries by its own policy. When an undo fails for good, the remaining undos
    still run, then :class:`CompensationFailed` is raised (from the original error). Engine
    control flow (suspension, lost leases, storage errors) never triggers compensation.

    Registrations made in :func:`durable.parallel` branches are ordered by their position in
    the workflow (branch by branch), not by which thread got there first, so replays compensate
    in the same order.
    """

    def __init__(self) -> None:
        self._undos: list[tuple[tuple[float, ...], Callable[..., Any], tuple[Any, ...], Any]] = []
        self._seen: dict[tuple[float, ...], int] = {}
        self._lock = threading.Lock()

    def add(self, undo: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Register ``undo(*args, **kwargs)`` to run if the saga compensates.

        Call it right after the forward step succeeds (or, for an action that may have taken
        effect even though it failed, right before it, with an undo that tolerates "nothing to
        undo").

        Args:
            undo: a ``@step`` (so that it is recorded once and never repeated by a replay).
            *args: positional arguments ``undo`` is called with when the saga compensates.
            **kwargs: keyword arguments for that call.

        Raises:
            ConfigurationError: ``undo`` is not a step.
        """
        if _step_name(undo) is None:
            raise ConfigurationError(
                f"Saga.add() takes a @step as the undo action, got {undo!r}: decorate it with "
                "@durable.step so that it is recorded once and never repeated by a replay"
            )
        position = _position()
        with self._lock:
            nth = self._seen.get(position, 0)
            self._seen[position] = nth + 1
            self._undos.append(((*position, nth), undo, args, kwargs))

    @property
    def pending(self) -> list[str]:
        """The registered undo steps' names, in the order :meth:`compensate` would run them."""
        with self._lock:
            return [_step_name(undo) or repr(undo) for undo, _, _ in self._ordered()]

    def compensate(self) -> Any:
        """Run the registered undos now, newest first, and forget them.

        In async workflows (and outside workflows in a running event loop) ``await`` it.

        Raises:
            CompensationFailed: an undo step failed for good (the others still ran).
        """
        if _awaits():
            return self._compensate_async(None)
        self._compensate(None)
        return None

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Saga:
        frame = current_frame.get()
        if frame is not None and frame.ctx.is_async:
            raise ConfigurationError(
                "in an async workflow use `async with durable.Saga() as saga:` (the undo "
                "steps must be awaited)"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and self._undos:
            exc = cancelled_meanwhile()
            if exc is not None:
                self._compensate(exc)
                raise exc
        if exc is not None and _compensates(exc):
            self._compensate(exc)

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and self._undos:
            exc = cancelled_meanwhile()
            if exc is not None:
                await self._compensate_async(exc)
                raise exc
        if exc is not None and _compensates(exc):
            await self._compensate_async(exc)

    # -- running the undos -------------------------------------------------------------------

    def _ordered(self) -> list[tuple[Callable[..., Any], tuple[Any, ...], Any]]:
        undos = sorted(self._undos, key=lambda u: u[0], reverse=True)
        return [(undo, args, kwargs) for _, undo, args, kwargs in undos]

    def _take(self) -> list[tuple[Callable[..., Any], tuple[Any, ...], Any]]:
        with self._lock:
            undos = self._ordered()
            self._undos.clear()
        return undos

    def _compensate(self, cause: BaseException | None) -> None:
        failed: list[tuple[Callable[..., Any], Exception]] = []
        with compensating():
            for undo, args, kwargs in self._take():
                try:
                    result = undo(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 - collected, raised together below
                    failed.append((undo, error))
                    continue
                if isinstance(result, Awaitable):
                    _discard(result)
                    raise ConfigurationError(
                        f"undo step {_step_name(undo)!r} is async: use `async with` / "
                        "`await saga.compensate()` in async code"
                    )
        _raise_failures(failed, cause)

    async def _compensate_async(self, cause: BaseException | None) -> None:
        failed: list[tuple[Callable[..., Any], Exception]] = []
        with compensating():
            for undo, args, kwargs in self._take():
                try:
                    result = undo(*args, **kwargs)
                    if isinstance(result, Awaitable):
                        await result
                except Exception as error:  # noqa: BLE001 - collected, raised together below
                    failed.append((undo, error))
        _raise_failures(failed, cause)


def _compensates(exc: BaseException) -> bool:
    """Whether an error leaving a saga block rolls it back.

    The run's cancellation does; so does any ordinary exception, which replays identically
    (it comes from the recorded log or from deterministic workflow code). A storage failure
    (``WorldError``, a lost lease) is not part of the workflow's history and is retried by
    the worker instead; suspension and the like are ``BaseException`` and pass through.
    """
    if isinstance(exc, Cancelled):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, WorldError)


class compensating:  # noqa: N801 - used like a function: `with compensating():`
    """Let undo steps run although the run's cancellation was requested.

    ``RunContext.check_cancel`` raises ``Cancelled`` at every durable point once a cancel is
    requested; it lets them proceed while ``ctx.compensating`` is true. A run cancelled before
    its deadline no longer has one: it ends cancelled however long its undo steps take.
    """

    def __enter__(self) -> None:
        frame = current_frame.get()
        self._ctx = frame.ctx if frame is not None else None
        self._previous = self._ctx.compensating if self._ctx is not None else False
        if self._ctx is not None:
            self._ctx.compensating = True
            if self._ctx.cancel_requested and not self._ctx.timed_out:
                # Cancelled before its deadline: undo steps that outlast the deadline must not
                # turn the cancel into a timeout (WorkflowTimedOut) once they are done.
                self._ctx.deadline = None

    def __exit__(self, *exc_info: object) -> None:
        if self._ctx is not None:
            self._ctx.compensating = self._previous


def _raise_failures(
    failed: list[tuple[Callable[..., Any], Exception]], cause: BaseException | None
) -> None:
    if not failed:
        return
    lines = [f"{_step_name(undo)}: {_describe(error)}" for undo, error in failed]
    if isinstance(cause, Cancelled):
        # The run still ends cancelled, its result saying which undos failed.
        note_undo_failures(lines)
        return
    error = CompensationFailed(lines, _describe(cause) if cause is not None else None)
    error.errors = tuple(e for _, e in failed)
    raise error from cause


def note_undo_failures(lines: list[str]) -> None:
    """Record with the outcome of the run being cancelled that these undos failed."""
    frame = current_frame.get()
    if frame is not None:
        frame.ctx.undo_failures.extend(lines)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _step_name(fn: Callable[..., Any]) -> str | None:
    """The step's name if ``fn`` is a step (or a step bound as a method), else ``None``."""
    if isinstance(fn, Step):
        return fn.name
    if isinstance(fn, functools.partial):
        owner = getattr(fn.func, "__self__", None)
        if isinstance(owner, Step):
            return owner.name
    return None


def _position() -> tuple[float, ...]:
    """Where the workflow is: after the last operation of the current branch."""
    frame = current_frame.get()
    if frame is None:
        return ()
    branch = frame.branch
    path = tuple(float(part) for part in branch.path.split(".") if part)
    return (*path, float(branch.counter), _AFTER)


def _awaits() -> bool:
    frame = current_frame.get()
    if frame is not None:
        return frame.ctx.is_async
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _discard(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
