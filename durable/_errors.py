"""Errors raised by durable.

The hierarchy::

    DurableError
    ├── SerializationError        a value cannot be recorded
    ├── InvalidDuration           a sleep or timeout that makes no sense (also a ValueError)
    ├── NonDeterminismError       replay met different code than the log recorded
    ├── InvalidEventLog           replay() was given a log no world could have recorded
    ├── WorkflowFailed            a run ended in failure (raised by Run.result)
    ├── WorkflowCancelled         a run was cancelled (raised by Run.result)
    │   └── WorkflowTimedOut      ... because its timeout ran out
    ├── RunNotFound               no run with that id
    ├── UnknownWorkflow           the log names a workflow this process does not know
    ├── ConfigurationError        a bad world URL, a bad decorator use, a missing extra
    ├── WorldError                the storage backend failed (corrupt file, locked database)
    │   ├── LeaseLost             another worker took over the run
    │   └── RunDataLost           part of one run's stored data is gone (expired, deleted)
    ├── StepFailed                a step ran out of attempts and its error cannot be re-created
    ├── HookNotFound              resume_hook with a token no live hook has
    ├── HookConflict              create_hook with a caller-chosen token a live hook already has
    ├── HookTimeout               a hook's wait ran out of time (raised in the workflow)
    ├── PayloadInvalid            resume_hook with a payload the hook's pydantic model rejects
    └── FatalError                raised by user code: do not retry this step
    RetryableError                raised by user code: retry, optionally after a delay

Engine control flow (suspension, cancellation) uses ``BaseException`` subclasses defined in
``durable._control`` so that ``except Exception`` in user code cannot swallow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


class DurableError(Exception):
    """Root of every error raised by durable."""


class SerializationError(DurableError):
    """A value could not be serialized or deserialized; nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidDuration(DurableError, ValueError):
    """A duration or point in time was negative, not finite, or unparsable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class ConfigurationError(DurableError):
    """durable was configured or used in a way that cannot work."""


class NonDeterminismError(DurableError):
    """Replay found a different operation than the one the log recorded at a position.

    Attributes:
        position: the operation id (``"3"``, ``"4.1.2"``) where the two differ.
        recorded: what the log holds at that position, e.g. ``"step 'charge'"``.
        new: what the workflow code does there now.
        patch_id: the patch whose ``durable.patched()`` marker the log holds there, if it does:
            the run was recorded by code that has the patch, and the code replaying it does not.
        run_id: the run, when a world holds it (named in what to do).
        location: ``path:line in function`` of the workflow code's call that diverged, when
            known (not when the code ended where the log goes on).
    """

    def __init__(
        self,
        position: str,
        recorded: str,
        new: str,
        patch_id: str | None = None,
        run_id: str | None = None,
        location: str | None = None,
    ) -> None:
        self.position = position
        self.recorded = recorded
        self.new = new
        self.patch_id = patch_id
        self.run_id = run_id
        self.location = location
        at = f", at {location}" if location else ""
        message = (
            f"workflow code no longer matches its recorded history at position {position}{at}: "
            f"the log recorded {recorded}, the code now calls {new}. "
        )
        if patch_id is not None:
            # The usual advice (add a patched() call) is wrong here: the code that recorded the
            # run has that call; the code replaying it is older (a rolling deploy, a rollback).
            message += (
                f"The run was recorded by code with patch {patch_id!r}, which this code "
                "lacks: this happens when a worker runs code older than the one that recorded "
                "the run (a rolling deploy, a rollback): stop workers running older code, then "
                f"`durable retry {run_id or 'RUN_ID'}`. If the patched() call was removed on "
                f'purpose, leave durable.deprecate_patch("{patch_id}") where it was. '
                "Otherwise, either"
            )
        else:
            message += "Either"
        super().__init__(
            message + " the code changed (changing the order or names of steps breaks runs "
            "already in flight: keep the old path for them behind "
            "`if durable.patched(\"change-id\"):`, and where a patched() call was removed "
            "leave durable.deprecate_patch(\"change-id\")), or the workflow decides what to "
            "call from something that differs between executions (time.time(), random, "
            "os.environ, a database read): use durable.now(), durable.random() or "
            "durable.uuid4(), or read it in a step."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.position, self.recorded, self.new, self.patch_id, self.run_id, self.location),
        )


class InvalidEventLog(DurableError, ValueError):
    """:func:`durable.replay` was given an event log that no world could have recorded.

    Attributes:
        index: the offending event's position in the sequence passed (0-based).
        problem: what is wrong with it.
    """

    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        self.problem = problem
        super().__init__(
            f"the event log is not valid at events[{index}]: {problem}. A valid log is what "
            "Run.events() or World.read_events() returns: durable.Event records of one run, "
            "seq strictly increasing, run_created first; an operation's event (step_completed, "
            "step_failed, sleep_started, value_recorded, ...) carries the operation's op_id "
            '("1", "2.1") and name, and its data as durable records it (step results '
            "and values encoded by durable's serializer, the rest JSON objects)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.index, self.problem))


class WorkflowFailed(DurableError):
    """A run ended in failure.

    Attributes:
        run_id: the failed run.
        error_type: the qualified type name of the original exception.
        error_message: its message.
        traceback: the formatted traceback text, as recorded.
        cause: the original exception re-created, when its type could be imported.
    """

    def __init__(
        self,
        run_id: str,
        error_type: str,
        error_message: str,
        traceback: str = "",
        cause: BaseException | None = None,
    ) -> None:
        self.run_id = run_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        self.cause = cause
        super().__init__(f"run {run_id} failed: {error_type}: {error_message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.run_id, self.error_type, self.error_message, self.traceback, None),
        )


class WorkflowCancelled(DurableError):
    """The run was cancelled before it finished.

    Attributes:
        undo_failures: one line per saga undo step (or DAG ``compensate`` action) that failed
            while the cancelled run compensated, ``"name: ErrorType: message"``; empty when
            everything was undone. Something may be left half undone: it needs attention.
    """

    def __init__(self, run_id: str, undo_failures: Sequence[str] = ()) -> None:
        self.run_id = run_id
        self.undo_failures = list(undo_failures)
        super().__init__(f"run {run_id} was cancelled{_undo_text(self.undo_failures)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.undo_failures))


def _undo_text(failures: list[str]) -> str:
    if not failures:
        return ""
    return "; undo steps failed while it compensated (it may be left half undone): " + "; ".join(
        failures
    )


class WorkflowTimedOut(WorkflowCancelled):
    """The run was cancelled because it was still unfinished at its deadline (its timeout).

    Attributes:
        deadline: when (epoch seconds) the timeout ran out.
    """

    def __init__(self, run_id: str, deadline: float, undo_failures: Sequence[str] = ()) -> None:
        super().__init__(run_id, undo_failures)
        self.deadline = deadline
        when = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")
        self.args = (
            f"run {run_id} timed out: it was still unfinished at its deadline, {when}"
            + _undo_text(self.undo_failures),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.deadline, self.undo_failures))


class RunNotFound(DurableError):
    """No run with this id exists in the world."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r} in this world")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id,))


class UnknownWorkflow(DurableError):
    """A run names a workflow that is not registered in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no workflow named {name!r} is registered in this process: import the module that "
            "defines it (e.g. `durable worker myapp.workflows`) or check the name"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name,))


class WorldError(DurableError):
    """The world (storage backend) failed; the message says what to check.

    Attributes:
        transient: the failure may pass by itself (a lock held too long, a throttled or
            unreachable service); workers keep retrying. Otherwise (a corrupt file, no
            permission) retrying cannot help and a worker stops.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_world_error, (type(self), str(self), self.transient))


def _rebuild_world_error(cls: type[WorldError], message: str, transient: bool) -> WorldError:
    error = cls.__new__(cls)
    WorldError.__init__(error, message, transient=transient)
    return error


class LeaseLost(WorldError):
    """This process no longer holds the run's lease; another worker owns it now."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"lost the lease on run {run_id}: another worker took it over (this worker was "
            "paused longer than the lease lasts); its work stops here and nothing is overwritten"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id,))


class RunDataLost(WorldError):
    """Part of one run's stored data is gone (it expired, or was deleted by hand).

    That run cannot go on: a worker fails it with this message and goes on with other runs.
    Reading the rest of the world (listing runs, their status, cancelling) still works.
    """


class CancelRequested(WorldError):
    """The run's cancellation was requested, so it may no longer end ``completed`` or ``failed``.

    Raised by ``World.append`` for such an outcome; nothing was written. Cancellation is final
    once requested: the engine records the run as ``cancelled`` instead.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} was cancelled before it finished; it ends cancelled")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id,))


class StepFailed(DurableError):
    """A step ran out of attempts and its exception could not be re-created.

    Attributes:
        step_name: the step's name.
        error_type: the qualified type name of the last exception.
        error_message: its message.
        traceback: its formatted traceback text.
    """

    def __init__(
        self, step_name: str, error_type: str, error_message: str, traceback: str = ""
    ) -> None:
        self.step_name = step_name
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        super().__init__(f"step {step_name!r} failed: {error_type}: {error_message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.step_name, self.error_type, self.error_message, self.traceback),
        )


class FatalError(DurableError):
    """Raise from a step to fail it at once, without further attempts."""


class RetryableError(Exception):
    """Raise from a step to ask for another attempt, optionally after a given delay.

    Args:
        message: what went wrong.
        retry_after: seconds (or a duration string / timedelta) before the next attempt;
            ``None`` uses the step's retry policy.
    """

    def __init__(self, message: str = "", retry_after: object = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.retry_after))


class HookNotFound(DurableError):
    """No live hook has this token: it never existed, timed out, was disposed, or its run ended."""

    def __init__(self, token: str, timed_out_at: float | None = None) -> None:
        self.token = token
        self.timed_out_at = timed_out_at
        if timed_out_at is not None:
            when = datetime.fromtimestamp(timed_out_at, tz=UTC).isoformat(timespec="seconds")
            super().__init__(
                f"hook {token!r} timed out at {when}: its run takes its timeout path "
                "(HookTimeout), so a payload now would come too late; nothing was delivered"
            )
            return
        super().__init__(
            f"no hook is waiting for token {token!r}: it was never created, it timed out, it "
            "was disposed, or its run has finished (`durable hooks` lists live hooks)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.token, self.timed_out_at))


class HookConflict(DurableError):
    """A caller-chosen hook token is already held by another live hook."""

    def __init__(self, token: str, run_id: str) -> None:
        self.token = token
        self.run_id = run_id
        super().__init__(
            f"hook token {token!r} is already used by a live hook of run {run_id}: tokens are "
            "unique among live hooks; include something unique in it (e.g. an order id), or "
            "let durable choose a random one with create_hook()"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.token, self.run_id))


class HookTimeout(DurableError):
    """Raised in the workflow when a hook's wait runs out of time."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"hook {token!r} timed out before it was resumed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.token,))


class PayloadInvalid(DurableError):
    """A hook payload does not validate against the hook's pydantic model; nothing was sent."""

    def __init__(self, token: str, schema: str, error: object) -> None:
        self.token = token
        self.schema = schema
        super().__init__(
            f"payload for hook {token!r} does not fit {schema}: {' '.join(str(error).split())}; "
            "nothing was delivered"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.token, self.schema, str(self).split(": ", 1)[-1]))
