"""The :class:`Run` handle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from durable._cancellation import recorded_cancellation
from durable._context import current_frame
from durable._errors import (
    ConfigurationError,
    DurableError,
    LeaseLost,
    RunNotFound,
    WorkflowFailed,
)
from durable._serialization import error_from_dict, loads
from durable._streams import DEFAULT_STREAM, decode_chunk
from durable.world import (
    FINISHED_STATUSES,
    Event,
    NewEvent,
    RunRecord,
    RunStatus,
    RunUpdate,
    World,
    make_owner_id,
)

if TYPE_CHECKING:
    from durable._runtime import Runtime


T = TypeVar("T")


class Run(Generic[T]):
    """A handle on one run of a workflow, in this process or any other.

    ``wf.start(...)`` returns a ``Run`` typed by the workflow's result (``Run[int]``), so
    ``run.result()`` and ``await run`` are too; :func:`durable.get_run` gives ``Run[Any]``.
    """

    def __init__(self, run_id: str, runtime: Runtime, record: RunRecord | None = None) -> None:
        self.id = run_id
        self._bound = runtime
        self._record = record

    @property
    def _runtime(self) -> Runtime:
        # durable.configure() replaces the runtime (stopping the old one) and may keep its world:
        # the handle follows, or waiting on it would never see the run woken or executed.
        bound = self._bound
        if bound.stopped:
            from durable._client import current_runtime

            current = current_runtime()
            if current is not None and current.world is bound.world:
                self._bound = current
                return current
        return bound

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.workflow_name} {self.status}>"

    def _refuse_in_workflow_code(self, how: str) -> None:
        if current_frame.get() is not None:
            # Not recorded, so a replay could see another outcome; and it holds the worker's
            # thread (a time-skipping test world never advances while a run executes).
            raise ConfigurationError(
                f"waiting for run {self.id} with {how} in workflow code is not durable: call "
                "or start the workflow from this workflow (a child run, waited for durably), "
                "or wait for it inside a step"
            )

    def _fetch(self) -> RunRecord:
        record = self._runtime.world.get_run(self.id)
        if record is None:
            raise RunNotFound(self.id)
        self._record = record
        return record

    @property
    def workflow_name(self) -> str:
        """The name of the workflow this run executes."""
        record = self._record or self._fetch()
        return record.workflow_name

    @property
    def status(self) -> RunStatus:
        """``pending``, ``running``, ``suspended``, ``completed``, ``failed`` or ``cancelled``."""
        return self._fetch().status

    @property
    def parent_id(self) -> str | None:
        """The run that started this one as a child, if any."""
        return (self._record or self._fetch()).parent_id

    def children(self) -> list[Run[Any]]:
        """The child runs this run started, in the order it started them."""
        from durable._children import child_ids

        return [Run(child, self._runtime) for child in child_ids(self.events())]

    @property
    def record(self) -> RunRecord:
        """The run as stored now (fetched on each access)."""
        return self._fetch()

    def events(self) -> list[Event]:
        """The run's recorded log, oldest first."""
        self._fetch()
        return self._runtime.world.read_events(self.id)

    def cancel(self) -> bool:
        """Stop the run at its next durable point (at once if it has not started).

        Undo steps registered with a :class:`~durable.Saga` run first; then the run becomes
        ``cancelled``. A finished run is left as it is.

        Returns:
            True if the run is cancelled or will be; False if it had already finished
            (``status`` tells how).
        """
        outcome = cancel_run(self._runtime.world, self.id)
        if outcome == "requested":
            self._runtime.notify_cancel(self.id)
            self._runtime.ensure_worker()  # a worker replays it to its next durable point
        return outcome != "already_finished"

    def retry(self) -> None:
        """Run a failed run again from where it failed; its finished steps are not run again.

        The step whose failure failed the run runs again (from its first attempt), then the
        workflow goes on; a run failed by a ``NonDeterminismError`` replays with the code as it
        is now (roll the change back first). Executed here, or by a worker if this process has
        none (``configure(worker=False)``).

        Raises:
            ConfigurationError: the run is not ``failed``, or is a child run.
        """
        if current_frame.get() is not None:
            raise ConfigurationError(
                f"retrying run {self.id} from workflow code is not durable: retry it from a step, "
                "or from code outside workflows"
            )
        self._record = self._runtime.retry(self.id)

    def result(self, timeout: float | None = None) -> T:
        """Block until the run finishes and return its result.

        Raises:
            WorkflowFailed: the run failed (carries the original type, message and traceback).
            WorkflowCancelled: the run was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
            WorldError: this process's worker stopped on a failure of the world that retrying
                cannot fix (nothing here would ever finish the run).
            ConfigurationError: called on the thread of the event loop that executes the
                unfinished run (a task awaits the async workflow there): ``await`` the run.
        """
        self._refuse_in_workflow_code("result()")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._runtime.ensure_worker()  # someone must execute the run if it is due or orphaned
        with self._runtime.waiting():
            delay = 0.002
            while True:
                record = self._fetch()
                if record.status in FINISHED_STATUSES:
                    result: T = outcome_of(record)
                    return result
                self._raise_if_worker_stopped()
                self._refuse_to_block_its_loop(record)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(self._still(record))
                wait = delay if remaining is None else min(delay, remaining)
                self._runtime.wait_for_progress(wait)
                delay = min(delay * 2, 0.1)

    def _still(self, record: RunRecord) -> str:
        """Why a wait for the run's result timed out: what the run waits for, if anything."""
        world = self._runtime.world
        what = f"run {self.id} is still {record.status}"
        try:
            hooks = world.list_hooks(record.id)
        except DurableError:
            hooks = []
        wake_at = record.wake_at if record.status == "suspended" else None
        # The hook whose timeout wakes the run is the one it waits on; with none, the run
        # sleeps (or waits out a retry's delay) beside any hook it has open.
        timing_out = [h for h in hooks if wake_at is not None and h.timeout_at == wake_at]
        waited_on = timing_out or ([] if wake_at is not None else hooks)
        if waited_on:
            what += f", waiting on hook {waited_on[0].token!r}"
        if wake_at is not None:
            due = datetime.fromtimestamp(wake_at, UTC).isoformat(timespec="seconds")
            what += f", {'timing out' if timing_out else 'due'} at {due}"
            if hooks and not timing_out:
                what += f" (hook {hooks[0].token!r} is open too)"
            if self._runtime.options.time_skipping is None and wake_at > world.now():
                what += (
                    f" ({wake_at - world.now():,.0f} s from now on {world.url}; in tests, "
                    "durable.testing's world skips such waits, or env.advance() moves its clock)"
                )
        return what

    def _refuse_to_block_its_loop(
        self,
        record: RunRecord,
        call: str = "run.result()",
        instead: str = "`await run` (or `await run.wait(timeout)`)",
    ) -> None:
        if self._runtime.blocks_its_loop(record):
            # Blocking would stop the very loop that must finish the run: it would wait until
            # its timeout (or for ever), then raise TimeoutError.
            raise ConfigurationError(
                f"run {self.id} executes on this thread's event loop, which {call} would "
                f"block, so the run could never finish: in async code, {instead} instead"
            )

    def _raise_if_worker_stopped(self) -> None:
        error = self._runtime.fatal_error
        if error is not None:
            raise error

    async def wait(self, timeout: float | None = None) -> T:
        """Await the run's result (the async form of :meth:`result`)."""
        self._refuse_in_workflow_code("await")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._runtime.ensure_worker()  # someone must execute the run if it is due or orphaned
        with self._runtime.waiting():
            delay = 0.002
            while True:
                record = self._fetch()
                if record.status in FINISHED_STATUSES:
                    result: T = outcome_of(record)
                    return result
                self._raise_if_worker_stopped()
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(self._still(record))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    def stream(
        self, name: str = DEFAULT_STREAM, start: int = 0, timeout: float | None = None
    ) -> Iterator[Any]:
        """Iterate the chunks the run's steps write to the stream ``name``, as they come.

        Yields each chunk from index ``start`` on (a ``str``, ``bytes`` or the value written),
        waiting for new ones while the stream is open, and ends once it is closed: explicitly,
        when the step that wrote it returned, or when the run finished. Works from any process.

        Args:
            name: the stream's name (``durable.stream(name)`` in the step).
            start: the index of the first chunk to yield; to resume after a disconnect, pass
                the number of chunks already received.
            timeout: seconds to wait for each next chunk; ``None`` waits as long as it takes.

        Raises:
            RunNotFound: there is no such run.
            TimeoutError: ``timeout`` seconds passed without a new chunk.
        """
        for is_chunk, value in self._stream_steps(name, start, timeout):
            if is_chunk:
                yield value
            else:
                record = self._fetch()
                if record.status not in FINISHED_STATUSES:
                    self._refuse_to_block_its_loop(record, "run.stream()", "run.astream()")
                with self._runtime.waiting():
                    self._runtime.wait_for_progress(value)

    async def astream(
        self, name: str = DEFAULT_STREAM, start: int = 0, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """The async form of :meth:`stream`: ``async for chunk in run.astream(name)``."""
        for is_chunk, value in self._stream_steps(name, start, timeout):
            if is_chunk:
                yield value
            else:
                with self._runtime.waiting():
                    await asyncio.sleep(value)

    def _stream_steps(
        self, name: str, start: int, timeout: float | None
    ) -> Iterator[tuple[bool, Any]]:
        # Shared by stream() and astream(): (True, chunk) for each chunk, (False, seconds)
        # when the reader should wait before polling again.
        index = _stream_start(start)
        self._fetch()
        self._runtime.ensure_worker()  # someone must execute the run if it is due or orphaned
        delay = _FIRST_POLL
        idle_since = time.monotonic()
        while True:
            chunks, closed = self._runtime.world.read_chunks(self.id, name, index, _BATCH)
            for data in chunks:
                index += 1
                yield True, decode_chunk(data)
            if closed:
                return
            if chunks:
                delay, idle_since = _FIRST_POLL, time.monotonic()
                continue
            yield False, self._stream_wait(name, delay, idle_since, timeout)
            delay = min(delay * 2, _MAX_POLL)

    def _stream_wait(
        self, name: str, delay: float, idle_since: float, timeout: float | None
    ) -> float:
        if timeout is None:
            return delay
        remaining = idle_since + timeout - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no new chunk on stream {name!r} of run {self.id} for {timeout:g} s"
            )
        return min(delay, remaining)


_FIRST_POLL = 0.002
_MAX_POLL = 0.1
_BATCH = 1000
"""Chunks read per world call."""


def _stream_start(start: int) -> int:
    if start < 0:
        raise ValueError(f"a stream's start index must be >= 0, got {start}")
    return start


def outcome_of(record: RunRecord) -> Any:
    """The result of a finished run, or its error raised."""
    if record.status == "completed":
        return loads(record.output) if record.output is not None else None
    if record.status == "cancelled":
        raise recorded_cancellation(record.id, record.error)
    raise failure_of(record)


def failure_of(record: RunRecord) -> WorkflowFailed:
    """The :class:`WorkflowFailed` for a failed run."""
    info: dict[str, Any] = json.loads(record.error) if record.error else {}
    cause = error_from_dict(info) if info else None
    failure = WorkflowFailed(
        record.id,
        str(info.get("type", "Exception")),
        str(info.get("message", "")),
        str(info.get("traceback", "")),
        cause,
    )
    failure.__cause__ = cause
    return failure


def cancel_run(world: World, run_id: str, *, force: bool = False) -> str:
    """Cancel a run; returns ``cancelled``, ``requested`` or ``already_finished``.

    A run that has not started (nothing recorded yet) is cancelled here and now. A run with
    history is made due and a worker replays it to its next durable point, where it stops after
    running its saga's undo steps. ``force`` cancels a run no worker holds at once, even if no
    process has its workflow's code, without undo steps.

    Raises:
        RunNotFound: the world has no such run.
    """
    requested = world.request_cancel(run_id)
    if requested is None:
        raise RunNotFound(run_id)
    if requested.status in FINISHED_STATUSES:
        return "already_finished"
    if requested.last_seq > 1 and not force:
        return "requested"
    owner = make_owner_id()
    if world.acquire(run_id, owner, lease_ttl=30.0) is not None:
        try:
            world.append(
                run_id, owner, [NewEvent("run_cancelled")], RunUpdate("cancelled", release=True)
            )
        except LeaseLost:
            pass
        else:
            _cancelled_here(world, run_id, force)
    record = world.get_run(run_id)
    return "cancelled" if record is not None and record.status == "cancelled" else "requested"


def _cancelled_here(world: World, run_id: str, force: bool) -> None:
    # What a worker does after cancelling a run: cancel its children, wake its parent.
    from durable._children import child_ids, notify_parent

    for child in child_ids(world.read_events(run_id)):
        cancel_run(world, child, force=force)
    record = world.get_run(run_id)
    if record is not None:
        notify_parent(world, record)
