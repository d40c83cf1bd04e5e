"""The runtime: executes runs against a world, in this process.

It owns the embedded worker: a thread that claims due runs (pending, woken, orphaned), keeps this
process's leases alive, and hands runs to a thread pool (``def`` workflows) or to an event loop
thread (``async def`` workflows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from durable._cancellation import cancellation_data, cancellation_error
from durable._children import child_ids, notify_parent, start_child
from durable._coerce import coerce_arguments
from durable._context import Frame, current_frame
from durable._control import Cancelled, StorageUnavailable, Suspend
from durable._deadlines import (
    deadline_of,
    same_arguments,
    same_timeout,
    with_deadline,
)
from durable._decorators import (
    StartOptions,
    WorkflowDefinition,
    lookup_workflow,
    registered_workflows,
)
from durable._engine import Diverged, RunContext
from durable._errors import (
    CancelRequested,
    ConfigurationError,
    DurableError,
    LeaseLost,
    RunDataLost,
    SerializationError,
    UnknownWorkflow,
    WorkflowTimedOut,
    WorldError,
)
from durable._flusher import Flusher
from durable._retry import finish_retry, retry_run
from durable._run import Run, cancel_run
from durable._serialization import dumps, error_to_dict, loads
from durable._steps import attempt_failed
from durable._tasks import install_task_factory, wait_for_branches
from durable.world import (
    Event,
    HookRecord,
    NewEvent,
    NewRun,
    RunRecord,
    RunUpdate,
    World,
    make_owner_id,
    run_lifetime,
)

log = logging.getLogger("durable")

_BUSY_WAIT = 0.02
"""Seconds a busy worker waits for a batch of free slots before claiming for the ones it has."""
_WAKE_BATCH = 0.01
_FAILING_WAIT = 5.0  # the longest a worker waits between asks of a world that keeps failing
_UNWRITTEN_RUNS = 1000  # runs whose refused step results this process keeps
_UNKNOWN_CHECK = 10.0  # seconds between looks for runs of workflows this process does not know
_UNKNOWN_REPEAT = 60.0  # seconds before such runs of one workflow are reported again
_UNKNOWN_LISTED = 200  # runs of each status looked at for them
_UNKNOWN_IDS = 3  # run ids named on a line
_REPORTED_MESSAGE = 300  # characters of a failed run's error message a worker's log line shows
_STALL_WARNING = 2.0  # real seconds a time-skipping test may wait on nothing due before a hint
"""Seconds an idle worker waits at least before claiming again: runs falling due one after
another (2,000 a second) are claimed some at a time, not in a claim each, at the cost of
waking up to this much later."""


@dataclass
class Outcome:
    """How one execution of a run ended in this process."""

    status: str
    value: Any = None
    error: BaseException | None = None


@dataclass
class RuntimeOptions:
    """Tuning of a :class:`Runtime`."""

    lease_ttl: float = 30.0
    """Seconds a lease lasts without renewal; a dead worker's runs are recovered after it."""
    inline_wait_limit: float = 5.0
    """Sleeps and retry delays up to this many seconds wait in-process; longer ones suspend."""
    poll_interval: float = 0.2
    """How often the embedded worker looks for due runs."""
    max_concurrent_runs: int = 64
    """Runs this process executes at once."""
    force_replay: bool = False
    """Suspend and replay at every durable point (a testing mode)."""
    worker: bool = True
    """Run the embedded worker (claim due runs of registered workflows)."""
    time_skipping: Callable[[float], None] | None = None
    """Testing: when set, idle waits jump the world's clock to the next due time."""
    workflow_names: list[str] | None = field(default=None)
    """Only claim runs of these workflows (default: every registered workflow)."""
    report_unknown_workflows: bool = False
    """Log pending runs of workflows this process does not know (standalone workers: a missing
    import is then easy to spot; a script sharing a world with other code stays quiet)."""


class _Recorder:
    __slots__ = ("world", "run_id", "owner")

    def __init__(self, world: World, run_id: str, owner: str) -> None:
        self.world = world
        self.run_id = run_id
        self.owner = owner

    def record(self, events: list[NewEvent], update: RunUpdate | None = None) -> bool:
        return self.world.append(self.run_id, self.owner, events, update)

    def now(self) -> float:
        return self.world.now()

    def cancel_requested(self) -> bool:
        record = self.world.get_run(self.run_id)
        return record is not None and record.cancel_requested

    def lease_state(self, lease_ttl: float) -> tuple[bool, bool]:
        """Whether this worker still holds the run's lease, and whether a cancel was asked.

        The lease is renewed first (a conditional write): one that lapsed unnoticed can no
        longer be taken between this answer and the step it lets start.
        """
        self.world.renew_leases(self.owner, lease_ttl)
        record = self.world.get_run(self.run_id)
        if record is None:
            return False, False
        held = record.status == "running" and record.lease_owner == self.owner
        return held, record.cancel_requested

    def create_hook(self, hook: HookRecord, event: NewEvent) -> None:
        self.world.create_hook(self.owner, hook, event)

    def dispose_hook(
        self, token: str, event: NewEvent | None, expected_seq: int | None
    ) -> bool:
        return self.world.dispose_hook(self.run_id, self.owner, token, event, expected_seq)

    def read_events(self, after_seq: int) -> list[Event]:
        return self.world.read_events(self.run_id, after_seq)


class Runtime:
    """Executes runs of registered workflows against one world."""

    def __init__(self, world: World, options: RuntimeOptions | None = None) -> None:
        self.world = world
        self.options = options or RuntimeOptions()
        self.owner = make_owner_id()
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._active: dict[str, RunContext] = {}
        # Step results the world refused to record, by run (see RunContext.unwritten).
        self._unwritten: dict[str, dict[str, NewEvent]] = {}
        self._futures: set[Future[Any]] = set()
        self._executions: set[asyncio.Task[Outcome]] = set()  # direct calls' (see _call_async)
        self._executing: dict[str, int] = {}  # executions in flight (or queued) per run id
        # The event loop each async run executing here runs on (see blocks_its_loop).
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._waiters = 0
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._last_renew = time.monotonic()
        self._entered = 0  # executions ever entered here (time skipping checks none started)
        self._stranded: set[str] = set()
        self._handed_back: set[str] = set()
        self._reclaimed: set[str] = set()  # claimed again while still executing here
        self._bodies: set[str] = set()  # runs whose code executes here now (one execution each)
        self.fatal_error: WorldError | None = None
        """Set when the embedded worker stopped on an error that retrying cannot fix."""
        self._last_unknown_check = 0.0
        self._stalled_since: float | None = None
        self._stall_told = False
        self._draining = False
        self._reported_unknown: dict[str, float] = {}  # workflow name: when last said
        self._flusher = Flusher(self._active_contexts)

    # -- starting runs -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _creating(
        self,
        defn: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StartOptions,
        owned: bool,
    ) -> Iterator[tuple[RunRecord, bool]]:
        """Record the run; a run leased to this worker counts as executing here from the start.

        Otherwise, between its creation and its execution, the embedded worker could take this
        process for idle and, with time skipping, move the clock past the new lease.
        """
        data = dumps(
            with_deadline({"args": list(args), "kwargs": kwargs}, options.timeout, self.world),
            serializer=defn.serializer,
            what=f"input of workflow {defn.name!r}",
        )
        run_id = options.run_id or new_run_id()
        if owned:
            self._enter(run_id)
        try:
            record, created = self.world.create_run(
                NewRun(run_id, defn.name, data),
                owner=self.owner if owned else None,
                lease_ttl=self.options.lease_ttl,
            )
            if not created and record.workflow_name != defn.name:
                raise ConfigurationError(
                    f"run id {run_id!r} belongs to a run of workflow {record.workflow_name!r}, "
                    f"not {defn.name!r}: choose another id (ids are unique across workflows)"
                )
            if not created and record.input and not same_arguments(record.input, data):
                # Idempotent start returns the run already there; new arguments would otherwise
                # be dropped without a word (business ids such as order-42 get reused).
                log.warning(
                    "run %s already exists (%s) with other arguments: returning it as it is; "
                    "the arguments of this call are not used (start another run id for them)",
                    run_id,
                    record.status,
                )
            elif not created and not same_timeout(record, options.timeout):
                log.warning(
                    "run %s already exists (%s) with another timeout: returning it as it is; "
                    "the timeout of this call is not used",
                    run_id,
                    record.status,
                )
            yield record, created
        finally:
            if owned:
                self._leave(run_id)

    def start(
        self,
        defn: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StartOptions,
    ) -> Run[Any]:
        """Record a run and, unless told otherwise, execute it in the background here.

        Inside a workflow this starts a child run and returns its :class:`ChildRun`.
        """
        if current_frame.get() is not None:
            return start_child(self, defn, args, kwargs, options.run_id, options.timeout)
        execute = self.options.worker if options.execute is None else options.execute
        with self._creating(defn, args, kwargs, options, owned=execute) as (record, created):
            if created and execute:
                self.submit(record)
        if execute:
            self.ensure_worker()
        return Run(record.id, self, record)

    def call(
        self,
        defn: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StartOptions,
    ) -> Any:
        """Run a workflow to completion (a coroutine for ``async def`` workflows).

        Inside a workflow this runs it as a child and returns its result (an awaitable in
        async workflows).
        """
        frame = current_frame.get()
        if frame is not None:
            child = start_child(self, defn, args, kwargs, options.run_id, options.timeout)
            if frame.ctx.is_async:
                return frame.ctx.hand_out(child.wait(), f"child workflow {defn.name!r}")
            return child.result()
        if defn.is_async:
            return self._call_async(defn, args, kwargs, options)
        with self._creating(defn, args, kwargs, options, owned=True) as (record, created):
            self.ensure_worker()
            if created:
                outcome = self.execute(record)
                if outcome.status == "completed":
                    return outcome.value
        return Run(record.id, self, record).result()

    async def _call_async(
        self,
        defn: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: StartOptions,
    ) -> Any:
        with self._creating(defn, args, kwargs, options, owned=True) as (record, created):
            self.ensure_worker()
            if created:
                # Its own task: a caller that stops waiting (a request's timeout, a client gone)
                # leaves the run going on here rather than cut a step short, to run it again.
                loop = asyncio.get_running_loop()
                with self._lock:
                    self._loops[record.id] = loop
                execution = loop.create_task(self.execute_async(record))
                self._executions.add(execution)
                execution.add_done_callback(self._executions.discard)
                outcome = await asyncio.shield(execution)
                if outcome.status == "completed":
                    return outcome.value
        return await Run(record.id, self, record).wait()

    def retry(self, run_id: str) -> RunRecord:
        """Make a failed run run again (see ``retry_run``); returns the run as it leaves it.

        It is executed here if this process has a worker, else left pending for one.

        Until its ``run_retried`` event is recorded, no execution may take the run up: replaying
        the log without it, one would meet the recorded failure and fail the run again. So the
        run is reopened under an owner id of its own, which this worker never takes for its own
        lease (as it would a run it claimed while the failed execution still ran, once that
        ends), and counts as executing here meanwhile, so that time skipping does not move the
        clock past that lease for the worker to claim it.
        """
        retrying = make_owner_id()
        self._enter(run_id)
        try:
            try:
                record = retry_run(self.world, run_id, retrying, self.options.lease_ttl)
            except DurableError:
                # Reopened perhaps, without its run_retried: given back, a worker fails it again
                # as it was, rather than once that lease lapses.
                with contextlib.suppress(DurableError):
                    self.world.release(run_id, retrying)
                raise
            self.world.release(run_id, retrying)  # pending: for this worker or any other
            if self.options.worker:
                leased = self.world.acquire(run_id, self.owner, self.options.lease_ttl)
                if leased is not None:  # else a worker took it first (ours: see _leave)
                    self.submit(leased)
                    record = leased
                self.ensure_worker()
        finally:
            self._leave(run_id)
        return record

    def submit(self, record: RunRecord) -> None:
        """Execute a leased run in the background (thread pool or event loop thread)."""
        defn = lookup_workflow(record.workflow_name)
        self._enter(record.id)
        if defn is not None and defn.is_async:
            loop = self._event_loop()
            with self._lock:
                self._loops[record.id] = loop
            future = asyncio.run_coroutine_threadsafe(self.execute_async(record), loop)
        else:
            future = self._thread_pool().submit(self.execute, record)
        with self._lock:
            self._futures.add(future)
        name = record.workflow_name
        future.add_done_callback(lambda done: self._submitted_done(record.id, name, done))

    def execute_now(self, record: RunRecord) -> Outcome:
        """Execute a leased run here and wait for it (sync or async workflow alike)."""
        defn = lookup_workflow(record.workflow_name)
        if defn is not None and defn.is_async:
            outcome: Outcome = self.run_coroutine(self.execute_async(record))
            return outcome
        return self.execute(record)

    def _submitted_done(self, run_id: str, workflow_name: str, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
        if future.cancelled():  # never started (the worker stopped first): hand it back
            self._give_back(run_id)
        elif future.exception() is None:
            report_ended(run_id, workflow_name, future.result())
        self._leave(run_id)

    def _enter(self, run_id: str) -> None:
        with self._lock:
            self._executing[run_id] = self._executing.get(run_id, 0) + 1
            self._entered += 1

    def _leave(self, run_id: str) -> None:
        reclaimed = False
        with self._progress:
            count = self._executing.pop(run_id, 1) - 1
            if count > 0:
                self._executing[run_id] = count
            else:
                self._active.pop(run_id, None)
                self._loops.pop(run_id, None)
                self._handed_back.discard(run_id)
                if self._reclaimed:
                    reclaimed = run_id in self._reclaimed
                    self._reclaimed.discard(run_id)
            self._progress.notify_all()
            free = self.options.max_concurrent_runs - len(self._executing)
            claim_now = free >= self._claim_batch() or not self._executing
        if reclaimed:
            self._after_reclaim(run_id)
        if claim_now:
            self._wake.set()  # capacity is free: claim more due runs now, not at the next poll

    def _claim_batch(self) -> int:
        # A busy worker claims when a quarter of its slots are free rather than at each one: a
        # claim costs about as much for one run as for sixteen.
        return max(1, self.options.max_concurrent_runs // 4)

    # -- executing runs ----------------------------------------------------------------------

    def _prepare(self, record: RunRecord) -> tuple[WorkflowDefinition, RunContext] | None:
        defn = lookup_workflow(record.workflow_name)
        if defn is None:
            log.warning(
                "run %s: %s; leaving it pending for a worker that knows it",
                record.id,
                UnknownWorkflow(record.workflow_name),
            )
            self.world.release(record.id, self.owner)
            return None
        ctx = RunContext(
            run_id=record.id,
            workflow_name=defn.name,
            is_async=defn.is_async,
            recorder=_Recorder(self.world, record.id, self.owner),
            clock=self.world.now,
            seen_seq=record.last_seq,
            parent_id=record.parent_id,
            inline_wait_limit=self.options.inline_wait_limit,
            force_replay=self.options.force_replay,
            # Under forced replay every step result is a durable point of its own.
            defer_results=not self.options.force_replay,
            cancel_requested=record.cancel_requested,
            deadline=deadline_of(record),
            lease_ttl=self.options.lease_ttl,
            created_at=record.created_at,
            lifetime=run_lifetime(self.world),
        )
        ctx.lease_seen_at = ctx.clock()
        with self._lock:
            if record.id not in self._unwritten and len(self._unwritten) >= _UNWRITTEN_RUNS:
                del self._unwritten[next(iter(self._unwritten))]  # taken over elsewhere, likely
            ctx.unwritten = self._unwritten.setdefault(record.id, {})
        if record.last_seq > 1:  # more than run_created: there is history to replay
            events = record.events
            if events is None:
                events = self.world.read_events(record.id)
            if events and events[-1].kind == "run_failed":
                events = finish_retry(self.world, record.id, self.owner, events)
            ctx.load(events)
        with self._lock:
            self._active[record.id] = ctx
            if record.id in self._handed_back:
                ctx.release_requested = True
        self._flusher.runs_started()
        return defn, ctx

    def _active_contexts(self) -> list[RunContext]:
        with self._lock:
            return list(self._active.values())

    def execute(self, record: RunRecord) -> Outcome:
        """Execute a run this process has leased until it finishes or suspends."""
        self._enter(record.id)
        sole = self._begin_body(record.id)
        try:
            if not sole:
                return Outcome("pending")  # executed again once the execution here ends
            while True:
                prepared = self._prepare(record)
                if prepared is None:
                    return Outcome("pending")
                defn, ctx = prepared
                outcome = self._execute_sync(defn, ctx, record)
                again = self._continue_at_once(record.id, outcome)
                if again is None:
                    return outcome
                record = again
        except LeaseLost as exc:
            log.warning("%s", exc)
            return Outcome("lost")
        except WorldError as exc:
            return self._world_failed(record.id, exc)
        except Exception:
            log.exception("run %s: the engine failed; it will be retried", record.id)
            self._give_back(record.id)
            return Outcome("error")
        finally:
            self._end_body(record.id, sole)
            self._leave(record.id)

    def _execute_sync(
        self, defn: WorkflowDefinition, ctx: RunContext, record: RunRecord
    ) -> Outcome:
        if (ctx.cancel_requested or ctx.past_deadline()) and record.last_seq <= 1:
            # Nothing ran yet; a run with history replays to its next durable point instead,
            # so that a saga can compensate on the way out.
            return self._finish(ctx, Cancelled(ctx.run_id), None)
        token = current_frame.set(Frame(ctx, ctx.root))
        try:
            args, kwargs = _decode_input(record, defn)
            result = defn.fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded below
            return self._finish(ctx, ctx.ending(exc), None)
        finally:
            current_frame.reset(token)
        if ctx.root.stopped is not None:  # the workflow caught its own suspension and returned
            return self._finish(ctx, ctx.root.stopped, None)
        return self._finish(ctx, None, result)

    async def execute_async(self, record: RunRecord) -> Outcome:
        """Async :meth:`execute`, on the running event loop."""
        install_task_factory(asyncio.get_running_loop())
        self._enter(record.id)
        sole = self._begin_body(record.id)
        try:
            if not sole:
                return Outcome("pending")  # executed again once the execution here ends
            while True:
                prepared = self._prepare(record)
                if prepared is None:
                    return Outcome("pending")
                defn, ctx = prepared
                outcome = await self._execute_async(defn, ctx, record)
                again = self._continue_at_once(record.id, outcome)
                if again is None:
                    return outcome
                record = again
        except (asyncio.CancelledError, GeneratorExit):
            self._give_back(record.id)
            raise
        except LeaseLost as exc:
            log.warning("%s", exc)
            return Outcome("lost")
        except WorldError as exc:
            return self._world_failed(record.id, exc)
        except Exception:
            log.exception("run %s: the engine failed; it will be retried", record.id)
            self._give_back(record.id)
            return Outcome("error")
        finally:
            self._end_body(record.id, sole)
            self._leave(record.id)

    async def _execute_async(
        self, defn: WorkflowDefinition, ctx: RunContext, record: RunRecord
    ) -> Outcome:
        if (ctx.cancel_requested or ctx.past_deadline()) and record.last_seq <= 1:
            # Nothing ran yet; a run with history replays to its next durable point instead,
            # so that a saga can compensate on the way out.
            return self._finish(ctx, Cancelled(ctx.run_id), None)
        token = current_frame.set(Frame(ctx, ctx.root))
        ctx.task = asyncio.current_task()
        try:
            args, kwargs = _decode_input(record, defn)
            result = await defn.fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded below
            await wait_for_branches(ctx)
            ctx.forgotten()
            return self._finish(ctx, ctx.ending(exc), None)
        finally:
            current_frame.reset(token)
        await wait_for_branches(ctx)
        stopped = ctx.unwinding or ctx.root.stopped
        if stopped is not None:  # a branch (or the workflow) suspended and the workflow ignored it
            ctx.forgotten()
            return self._finish(ctx, stopped, None)
        forgotten = ctx.forgotten()
        if forgotten:
            # Deterministic: a replay makes the same calls and forgets the same ones.
            return self._finish(ctx, _never_awaited(ctx.workflow_name, forgotten), None)
        return self._finish(ctx, None, result)

    def _continue_at_once(self, run_id: str, outcome: Outcome) -> RunRecord | None:
        # A run that suspended until "now" (forced replay, or a wake-up already due) is
        # re-acquired and replayed here instead of waiting for the next poll.
        if outcome.status != "suspended" or outcome.value is None:
            return None
        with self._lock:
            handed_back = run_id in self._handed_back
            self._handed_back.discard(run_id)
        if handed_back or self._stopping.is_set():
            # Handed back: pending for any worker at once, not executed here again.
            if self.world.acquire(run_id, self.owner, self.options.lease_ttl) is not None:
                self.world.release(run_id, self.owner)
            return None
        if outcome.value > self.world.now():
            return None
        return self.world.acquire(run_id, self.owner, self.options.lease_ttl)

    def _finish(self, ctx: RunContext, exc: BaseException | None, result: Any) -> Outcome:
        """Record how an execution ended, in one write that also releases the lease."""
        if isinstance(exc, StorageUnavailable):
            raise exc.error
        if isinstance(exc, (LeaseLost, GeneratorExit)):
            raise exc
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not attempt_failed(exc):
            raise exc  # the main thread is stopping: the run is taken over once its lease lapses
        if isinstance(exc, asyncio.CancelledError) and not ctx.cancel_requested:
            raise exc  # the event loop is shutting down: not the workflow's failure
        if ctx.past_deadline() and not isinstance(exc, (Suspend, Diverged)):
            return self._cancel(ctx)  # returned or failed after its timeout: as a cancel would
        if exc is None:
            try:
                ctx.check_fully_replayed()
                output = dumps(
                    result,
                    serializer=_serializer(ctx),
                    what=f"result of workflow {ctx.workflow_name!r}",
                )
            except (Diverged, SerializationError) as error:
                return self._fail(ctx, error.error if isinstance(error, Diverged) else error)
            update = RunUpdate("completed", output=output, release=True)
            try:
                self._write(ctx, NewEvent("run_completed"), update)
            except CancelRequested:
                return self._cancel(ctx)
            self._notify_parent(ctx)
            return Outcome("completed", result)
        if isinstance(exc, Diverged):
            return self._fail(ctx, exc.error)
        if isinstance(exc, Cancelled):
            return self._cancel(ctx)
        if isinstance(exc, Suspend):
            waits = [w for w in ctx.waits if w is not None]
            wake_at = min(waits) if waits else None
            # Waiting on a hook: a payload resumed while this execution ran must wake it.
            expected = None
            if ctx.waits_for_hook:
                seen = ctx.outside_seen_seq
                expected = seen if seen is not None else ctx.expected_seq
            update = RunUpdate("suspended", wake_at=wake_at, release=True, expected_seq=expected)
            self._write(ctx, None, update)
            return Outcome("suspended", wake_at)
        return self._fail(ctx, exc)

    def _fail(self, ctx: RunContext, exc: BaseException) -> Outcome:
        info = error_to_dict(exc)
        data = json.dumps(info, separators=(",", ":"), default=str).encode()
        update = RunUpdate("failed", error=data, release=True)
        try:
            self._write(ctx, NewEvent("run_failed", data=data), update)
        except CancelRequested:
            return self._cancel(ctx)
        self._notify_parent(ctx)
        return Outcome("failed", error=exc)

    def _cancel(self, ctx: RunContext) -> Outcome:
        # Also when the workflow returned or failed after its cancellation was requested (while
        # its last step ran): cancellation is final once requested, as the world enforces.
        deadline = ctx.deadline if ctx.timed_out else None
        why = cancellation_data(deadline, ctx.undo_failures)
        cancelled = RunUpdate("cancelled", error=why, release=True)
        self._write(ctx, NewEvent("run_cancelled", data=why), cancelled)
        for event in list(ctx.recorded.values()):
            if event.kind == "child_started":
                cancel_run(self.world, child_ids([event])[0])
        self._notify_parent(ctx)
        error = cancellation_error(ctx.run_id, deadline, ctx.undo_failures)
        return Outcome("cancelled", error=error)

    def _notify_parent(self, ctx: RunContext) -> None:
        if ctx.parent_id is None:
            return
        record = self.world.get_run(ctx.run_id)
        if record is not None:
            notify_parent(self.world, record)
            self.wake()

    def _write(self, ctx: RunContext, event: NewEvent | None, update: RunUpdate) -> None:
        ctx.record_last(event, update)
        with self._lock:  # what an earlier execution could not write is recorded by now
            self._unwritten.pop(ctx.run_id, None)

    def _world_failed(self, run_id: str, exc: WorldError) -> Outcome:
        if isinstance(exc, RunDataLost):
            return self._data_lost(run_id, exc)
        if exc.transient:
            log.warning("run %s: the world failed (%s); it will be retried", run_id, exc)
            self._give_back(run_id)
        else:
            # Retrying cannot help (a damaged or foreign schema, a read-only file, ...), and each
            # retry would run the step in flight again: stop, as a failed poll does.
            self._stop_on(exc)
        return Outcome("error", error=exc)

    def _data_lost(self, run_id: str, exc: RunDataLost) -> Outcome:
        # Only this run's stored data is gone (expired, deleted): it can never go on, but the
        # worker can; the run is failed with the world's message, which names what is gone.
        log.error("run %s: %s", run_id, exc)
        data = json.dumps(error_to_dict(exc), separators=(",", ":"), default=str).encode()
        try:
            try:
                self.world.append(
                    run_id, self.owner, [NewEvent("run_failed", data=data)],
                    RunUpdate("failed", error=data, release=True),
                )
            except CancelRequested:
                why = cancellation_data(None, [])
                self.world.append(
                    run_id, self.owner, [NewEvent("run_cancelled", data=why)],
                    RunUpdate("cancelled", error=why, release=True),
                )
            record = self.world.get_run(run_id)
            if record is not None:
                notify_parent(self.world, record)
        except DurableError as error:
            log.warning("run %s: could not record that it failed (%s)", run_id, error)
            self._give_back(run_id)
            return Outcome("error", error=error)
        return Outcome("failed", error=exc)

    def _stop_on(self, exc: WorldError) -> None:
        log.error("worker stopped: %s", exc)
        self.fatal_error = exc
        self._stopping.set()
        self._wake.set()

    def _give_back(self, run_id: str) -> None:
        try:
            self.world.release(run_id, self.owner)
        except DurableError:
            # Still leased to us: the worker retries it instead of renewing the lease forever.
            with self._lock:
                self._stranded.add(run_id)


    # -- waiting and cancelling --------------------------------------------------------------

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark that a caller waits for a result (lets a testing clock skip ahead)."""
        with self._lock:
            self._waiters += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._waiters -= 1

    def wait_for_progress(self, timeout: float) -> None:
        """Sleep until a local run finishes or suspends, or ``timeout`` passes."""
        with self._progress:
            self._progress.wait(timeout)

    def idle(self) -> bool:
        """Whether no run executes here and none of the workflows this process runs is due."""
        if self.executing_runs():
            return False
        names = self._names()
        due = self.world.next_due_at(names) if names else None
        return due is None or due > self.world.now()

    def executing_runs(self) -> list[str]:
        """The ids of the runs executing in this process now."""
        with self._lock:
            return list(self._executing)

    def blocks_its_loop(self, record: RunRecord) -> bool:
        """Whether blocking this thread until the run finishes would keep it from finishing.

        True when this thread runs the event loop that executes the run here (an async
        workflow awaited directly by another task), or that this process's worker would execute
        it on (its own loop, where async runs go).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        with self._lock:
            if self._loops.get(record.id) is loop:
                return True
        if loop is not self._loop or not self.options.worker:
            return False
        defn = lookup_workflow(record.workflow_name)
        return defn is not None and defn.is_async

    def wake(self) -> None:
        """Make the embedded worker look for due runs now (a hook was resumed here)."""
        self._wake.set()

    def hand_back(self, run_id: str) -> None:
        """Make a run executing here stop at its next durable point and be handed back.

        The run becomes pending for any worker at once (e.g. a serverless invocation about to
        run out of time).
        """
        with self._lock:
            ctx = self._active.get(run_id)
        if ctx is not None:
            ctx.release_requested = True
        with self._lock:
            # Remembered until the execution ends, so it also applies to a run whose replay has
            # not started yet.
            self._handed_back.add(run_id)

    def notify_cancel(self, run_id: str) -> None:
        """Flag a run executing here as cancelled so it stops at its next durable point."""
        with self._lock:
            ctx = self._active.get(run_id)
        if ctx is not None:
            ctx.signal_cancel()
        self._wake.set()

    # -- the embedded worker -----------------------------------------------------------------

    def ensure_worker(self) -> None:
        """Start the embedded worker thread if it is enabled and not running."""
        if not self.options.worker or self._worker is not None:
            return
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._work, name="durable-worker", daemon=True
            )
            self._worker.start()

    def _names(self) -> list[str]:
        return self.options.workflow_names or list(registered_workflows())

    def _work(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                claimed = self.poll_once()
                failures = 0
            except WorldError as exc:
                if not exc.transient:
                    self._stop_on(exc)
                    return
                log.warning("worker: %s", exc)
                # The world fails at every ask (a full disk, an outage): ask less and less
                # often, up to every 5 s, rather than a hundred times a second.
                failures += 1
                self._wake.wait(min(0.05 * 2**failures, _FAILING_WAIT))
                self._wake.clear()
                continue
            except DurableError as exc:
                log.warning("worker: %s", exc)
                claimed = 0
            with self._lock:
                free = self.options.max_concurrent_runs - len(self._executing)
            if claimed and free >= self._claim_batch():
                continue
            if claimed or free <= 0:
                # Busy: wait for a batch of slots to free (``_leave`` wakes us) rather than
                # asking the world when work is due, which would spin while runs are overdue;
                # not long, so that a few long runs do not keep the free slots idle.
                self._wake.wait(min(self.options.poll_interval, _BUSY_WAIT))
                self._wake.clear()
                continue
            if self.options.report_unknown_workflows:
                self._report_unknown()
            try:
                wait = self._idle_wait()
            except DurableError as exc:  # a world that fails now may answer at the next poll
                log.warning("worker: %s", exc)
                wait = self.options.poll_interval
            self._wake.wait(wait)
            self._wake.clear()

    def renew_leases(self) -> None:
        """Extend the leases of the runs this process holds, and tell their executions."""
        renewed_at = self.world.now()
        self.world.renew_leases(self.owner, self.options.lease_ttl)
        for ctx in self._active_contexts():
            ctx.lease_renewed(renewed_at)

    def poll_once(self) -> int:
        """Claim and submit due runs once; renew leases when it is time. Returns how many."""
        now = time.monotonic()
        if now - self._last_renew > self.options.lease_ttl / 3:
            self._last_renew = now
            self.renew_leases()
        with self._lock:
            capacity = self.options.max_concurrent_runs - len(self._executing)
        if capacity <= 0 or self._draining:
            return 0
        names = self._names()
        if not names:
            return 0
        with self._lock:
            stranded, self._stranded = self._stranded, set()
        for run_id in stranded:
            self._give_back(run_id)
        claimed = self.world.claim_due(self.owner, self.options.lease_ttl, capacity, names)
        for record in claimed:
            if not self._reclaimed_while_executing(record.id):
                self.submit(record)
        return len(claimed)

    def _begin_body(self, run_id: str) -> bool:
        """Whether no execution of the run is under way here; if so this one is it.

        A lease admits one process, not one execution: a second one here (its lease renewed by
        this process's own claim) would replay beside the first and run its new steps again.
        It is left to run once the first ends (see ``_after_reclaim``).
        """
        with self._lock:
            if run_id not in self._bodies:
                self._bodies.add(run_id)
                return True
            self._reclaimed.add(run_id)
        log.warning("run %s is already executing in this process; not starting it twice", run_id)
        return False

    def _end_body(self, run_id: str, sole: bool) -> None:
        if sole:
            with self._lock:
                self._bodies.discard(run_id)

    def _reclaimed_while_executing(self, run_id: str) -> bool:
        # Our own lease lapsed (renewals fell behind, or a test clock jumped) while the run still
        # executes here, and the claim renewed it: starting it again would run its steps twice.
        # The execution goes on; if it leaves the run leased to us, it is executed once it ends.
        with self._lock:
            if run_id not in self._executing:
                return False
            self._reclaimed.add(run_id)
            return True

    def _after_reclaim(self, run_id: str) -> None:
        try:
            record = self.world.get_run(run_id)
        except DurableError as exc:  # its lease lapses and a worker takes it over
            log.warning("run %s: %s", run_id, exc)
            return
        if record is None or record.status != "running" or record.lease_owner != self.owner:
            return
        if self.stopped or self._draining:
            self._give_back(run_id)  # pending for any worker at once
        else:
            self.submit(record)

    def _report_unknown(self) -> None:
        # Runs of workflows this process does not know stay pending for another worker (a
        # missing import, or a workflow renamed by a deploy): say how many, per workflow name,
        # again each minute while they wait, so that none goes unnoticed and the log stays short.
        now = time.monotonic()
        if now - self._last_unknown_check < _UNKNOWN_CHECK:
            return
        self._last_unknown_check = now
        known = set(self._names())
        try:
            pending = self.world.list_runs(status="pending", limit=_UNKNOWN_LISTED)
            # A suspended run whose wake-up came while no worker had its workflow (the code
            # that deployed dropped or renamed it) waits the same way.
            asleep = self.world.list_runs(status="suspended", limit=_UNKNOWN_LISTED)
        except DurableError:
            return
        world_now = self.world.now()
        due = [r for r in asleep if r.wake_at is not None and r.wake_at <= world_now]
        waiting: dict[str, list[RunRecord]] = {}
        for record in [*pending, *due]:
            if record.workflow_name not in known:
                waiting.setdefault(record.workflow_name, []).append(record)
        at_least = "at least " if _UNKNOWN_LISTED in (len(pending), len(asleep)) else ""
        for name, records in waiting.items():
            told = self._reported_unknown.get(name)
            if told is not None and now - told < _UNKNOWN_REPEAT:
                continue
            self._reported_unknown[name] = now
            count = len(records)
            ids = ", ".join(r.id for r in records[:_UNKNOWN_IDS])
            if count > _UNKNOWN_IDS:
                ids += f" and {count - _UNKNOWN_IDS} more"
            log.warning(
                "%s%d run%s of workflow %r wait%s for a worker that has it registered (%s): %s",
                at_least,
                count,
                "" if count == 1 else "s",
                name,
                "s" if count == 1 else "",
                ids,
                UnknownWorkflow(name),
            )

    def _idle_wait(self) -> float:
        wait = self.options.poll_interval
        skip = self.options.time_skipping
        if skip is None:
            due = self.world.next_due_at(self._names())
            if due is not None:
                wait = max(_WAKE_BATCH, min(wait, due - self.world.now()))
            return wait
        with self._lock:
            idle = not self._executing and self._waiters > 0
            entered = self._entered
        if idle:
            due = self.world.next_due_at(self._names())
            self._note_stall(due is None)
            if due is not None and due > self.world.now():
                with self._lock:
                    # Only if nothing started here meanwhile: a run created since holds a lease
                    # that the jump would make look lapsed (and another execution would take it).
                    if self._entered == entered and not self._executing:
                        skip(due)
                return 0.0
        return min(wait, 0.01)

    def _note_stall(self, stalled: bool) -> None:
        # A test waits for a result, nothing executes and nothing will ever be due: only outside
        # input (a hook's payload) can move the runs on, and the test thread is the one waiting.
        if not stalled:
            self._stalled_since = None
            return
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > _STALL_WARNING and not self._stall_told:
            self._stall_told = True
            try:
                hooks = [h for h in self.world.list_hooks() if h.timeout_at is None]
            except DurableError:
                hooks = []
            waiting = hooks_text(hooks)
            log.warning(
                "the runs a test waits for wait for outside input (%s) and nothing is due, so "
                "the test clock cannot skip ahead: resume the hook from another thread (or start "
                "the run, then resume it, then wait), or give the hook a timeout",
                f"hook {waiting}" if waiting else "a hook without a timeout?",
            )

    def drain(self) -> None:
        """Claim nothing more and wait until no run executes here (it finished or suspended).

        Called as the interpreter exits, before thread pools refuse new work: a script that
        starts runs and ends finishes them, whatever they use (``parallel``, ``async def``).
        """
        if self._stopping.is_set():
            return  # stop() already handed back what it could not finish
        self._draining = True
        told: float | None = time.monotonic() + 2.0
        with self._progress:
            while self._executing:
                if told is not None and time.monotonic() > told:
                    told = None
                    log.warning(
                        "waiting for %d run(s) executing here to finish or suspend before "
                        "exiting (interrupt to leave them to a worker)", len(self._executing),
                    )
                self._progress.wait(0.5)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called: this runtime executes and wakes nothing more."""
        return self._stopping.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker; wait for runs executing here to finish or suspend."""
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)
        with self._lock:
            in_flight = list(self._futures)
            for ctx in self._active.values():
                ctx.release_requested = True
        # Runs in flight stop at their next durable point and are handed back (due at once for
        # another worker); a step already executing finishes and is recorded first.
        _, unfinished = wait_futures(in_flight, timeout=timeout)
        if unfinished:
            # A step that does not return (it waits on something that never comes) must not
            # hold the caller: a test's teardown, a worker's shutdown. Its thread is left behind.
            log.warning(
                "stopped with %d run(s) still executing a step after %.1f s: %s; their steps "
                "go on in the background, and a worker takes the runs over once their leases "
                "lapse", len(unfinished), timeout, ", ".join(self.executing_runs()[:10]),
            )
        if self._pool is not None:
            self._pool.shutdown(wait=not unfinished, cancel_futures=True)
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout)
            if not self._loop.is_running():
                self._loop.close()
        self._flusher.stop()

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.options.max_concurrent_runs, thread_name_prefix="durable-run"
                    )
        return self._pool

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    install_task_factory(loop)
                    thread = threading.Thread(
                        target=loop.run_forever, name="durable-loop", daemon=True
                    )
                    thread.start()
                    self._loop_thread = thread
                    self._loop = loop
        return self._loop

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the runtime's event loop thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop()).result()


def new_run_id() -> str:
    """A fresh run id: ``wrun_``, the time in milliseconds (12 hex digits), 80 random bits.

    Ids sort by creation time (like ULIDs), so a new run's id lands at the end of an index on
    ids instead of on a random page of it, and listings by id read in creation order.
    """
    return f"wrun_{time.time_ns() // 1_000_000:012x}{_id_bits.getrandbits(80):020x}"


# Run ids need to be unique, not secret: a generator of our own (seeded from os.urandom, reseeded
# in forked children, untouched by a user's random.seed) costs less than a system call per run.
_id_bits = random.Random()
os.register_at_fork(after_in_child=_id_bits.seed)


def _decode_input(
    record: RunRecord, defn: WorkflowDefinition
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    payload = loads(record.input)
    if not isinstance(payload, dict):
        raise SerializationError(f"run {record.id}: recorded input is not an args/kwargs mapping")
    args, kwargs = tuple(payload.get("args", ())), dict(payload.get("kwargs", {}))
    return coerce_arguments(defn.fn, f"input of workflow {defn.name!r}", args, kwargs)


def hooks_text(hooks: Sequence[HookRecord], shown: int = 5) -> str:
    """``'token' (run ID)`` for the first hooks, and how many more."""
    text = ", ".join(f"{h.token!r} (run {h.run_id})" for h in hooks[:shown])
    return text + (f" and {len(hooks) - shown} more" if len(hooks) > shown else "")


def report_ended(run_id: str, workflow_name: str, outcome: Outcome) -> None:
    """Say that a run executed in the background (a worker, a Lambda) failed or ran out of time.

    Nobody waits on a worker's execution: without this line a worker's log shows no sign of the
    runs it failed (a deploy that broke them goes unnoticed). A direct call raises instead.
    """
    error = outcome.error
    if error is None or isinstance(error, RunDataLost):  # RunDataLost: logged as it happened
        return
    if outcome.status == "cancelled" and not isinstance(error, WorkflowTimedOut):
        return  # cancelled on purpose
    if outcome.status not in ("failed", "cancelled"):
        return
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if len(message) > _REPORTED_MESSAGE:
        message = message[: _REPORTED_MESSAGE - 3] + "..."
    log.warning(
        "run %s (workflow %s) %s: %s%s; see `durable inspect %s`",
        run_id,
        workflow_name,
        "timed out" if outcome.status == "cancelled" else "failed",
        type(error).__name__,
        f": {message}" if message else "",
        run_id,
    )


def _serializer(ctx: RunContext) -> str:
    defn = lookup_workflow(ctx.workflow_name)
    return defn.serializer if defn is not None else "json"


__all__ = ["Outcome", "Runtime", "RuntimeOptions"]


def _never_awaited(workflow_name: str, calls: list[str]) -> ConfigurationError:
    listed = ", ".join(calls[:3]) + (f" and {len(calls) - 3} more" if len(calls) > 3 else "")
    return ConfigurationError(
        f"async workflow {workflow_name!r} called {listed} without await, so it never ran: "
        "in async workflows, await every step, child workflow, durable.sleep(), "
        "durable.sleep_until(), durable.map() and durable.parallel() call"
    )
