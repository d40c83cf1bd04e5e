"""The replay engine: a run's context and the durable operations workflows perform.

A :class:`RunContext` holds the recorded log of one run indexed by operation id. Each durable
operation (step, sleep, recorded value) takes the next id of its branch, and either returns what
the log recorded there or, when the log ends, performs the operation and records it through a
:class:`Recorder`. Without a recorder the context is *pure*: a missing operation becomes a
command and the workflow suspends, which is what :func:`durable.replay` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from durable._call_site import call_site
from durable._context import Branch, Frame, StepInfo, current_frame, current_step, step_clock
from durable._control import Cancelled, StorageUnavailable, Suspend
from durable._durations import parse_duration
from durable._errors import (
    DurableError,
    FatalError,
    InvalidDuration,
    LeaseLost,
    NonDeterminismError,
    RetryableError,
    StepFailed,
    WorldError,
)
from durable._serialization import dumps, error_from_dict, error_to_dict, loads
from durable.world import Event, HookRecord, NewEvent, RunLifetime, RunUpdate, World

log = logging.getLogger("durable")

_QUIET = 1.0
"""Seconds without a write after which a step's start asks the world whether the run was
cancelled (a write brings the answer back anyway)."""

if TYPE_CHECKING:
    from durable._decorators import StepDefinition

T = TypeVar("T")

_S = TypeVar("_S", bound=Suspend)

CANCEL_NOTICED = "cancel_requested"
"""Name of the recorded value that marks where a run stopped for its cancellation: a replay
stops at the same point, though a wait it stopped may have ended otherwise since (a sleep or a
hook timeout passed, a payload came)."""
PATCH_MARKER = "patched:"
"""Prefix of the names of the values ``durable.patched`` records (``patched:<patch id>``)."""

_FAMILY = {
    "step_completed": "step",
    "step_failed": "step",
    "step_retrying": "step",
    "sleep_started": "sleep",
    "value_recorded": "value",
    "hook_created": "hook",
    "child_started": "child",
}


class Diverged(BaseException):
    """Carries a :class:`NonDeterminismError` out of user code that might catch ``Exception``."""

    def __init__(self, error: NonDeterminismError) -> None:
        super().__init__(str(error))
        self.error = error


class Blocked(Suspend):
    """A pure replay reached an operation the log has not recorded yet."""


@dataclass(frozen=True, slots=True)
class StepCommand:
    """A step a pure replay needs executed next."""

    op_id: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Recorder(Protocol):
    """Writes a live run's events; the runtime implements it on top of a world."""

    world: World
    """The world the run is in (step code writes its streams there)."""
    owner: str
    """The worker holding the run's lease."""

    def record(self, events: list[NewEvent], update: RunUpdate | None = None) -> bool:
        """Append events (and apply ``update``); returns whether cancellation was requested."""
        ...

    def now(self) -> float:
        """The world's clock."""
        ...

    def cancel_requested(self) -> bool:
        """Whether cancellation of the run has been requested (a read)."""
        ...

    def lease_state(self, lease_ttl: float) -> tuple[bool, bool]:
        """Whether the run's lease is still held here (renewed), and whether a cancel was asked."""
        ...

    def create_hook(self, hook: HookRecord, event: NewEvent) -> None:
        """Register a live hook with its ``hook_created`` event."""
        ...

    def dispose_hook(
        self, token: str, event: NewEvent | None, expected_seq: int | None
    ) -> bool:
        """End a hook (see ``World.dispose_hook``)."""
        ...

    def read_events(self, after_seq: int) -> list[Event]:
        """The run's events after a sequence number."""
        ...


@dataclass(eq=False)
class _Write:
    """Events one thread asked to record, waiting for a write that takes them."""

    events: list[NewEvent]
    update: RunUpdate | None = None
    """Only on the execution's last write (see ``record_last``)."""
    background: bool = False
    """Written by the flusher: on failure the events wait for the run's next write instead."""
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class RunContext:
    """Everything the engine knows about one execution of one run."""

    run_id: str
    workflow_name: str
    is_async: bool
    recorder: Recorder | None = None
    clock: Callable[[], float] = time.time
    inline_wait_limit: float = 5.0
    force_replay: bool = False
    defer_results: bool = False
    """Step results wait for the run's next write (see ``step_succeeded``)."""
    deferred_at: float | None = None
    """When (``time.monotonic()``) the oldest step result still in ``buffered`` was deferred."""
    written_at: float = field(default_factory=time.monotonic)
    """When (``time.monotonic()``) this execution last wrote, or learned whether it is cancelled."""
    recorded: dict[str, Event] = field(default_factory=dict)
    retries: dict[str, list[Event]] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)
    ahead: set[str] = field(default_factory=set)
    """Recorded operations this execution has not reached yet (a replay still behind)."""
    buffered: list[NewEvent] = field(default_factory=list)
    waits: list[float | None] = field(default_factory=list)
    commands: list[StepCommand] = field(default_factory=list)
    new_events: list[NewEvent] = field(default_factory=list)
    cancel_requested: bool = False
    deadline: float | None = None
    """When (world clock) the run's timeout cancels it (see ``past_deadline``)."""
    created_at: float = 0.0
    lifetime: RunLifetime | None = None
    """How long the world keeps the run's log, from ``created_at`` (see ``check_wait``)."""
    timed_out: bool = False
    release_requested: bool = False
    compensating: bool = False
    undo_failures: list[str] = field(default_factory=list)
    """Undo steps that failed while a cancelled run compensated (recorded with its outcome)."""
    seen_seq: int = 0
    parent_id: str | None = None
    own_appended: int = 0
    waits_for_hook: bool = False
    outside_seen_seq: int | None = None
    """The oldest log position a branch waiting on the outside (a hook, a child) had read when it
    decided to suspend: the suspension wakes the run if anything came after it."""
    hook_payloads: dict[str, list[Event]] = field(default_factory=dict)
    hook_ends: dict[str, Event] = field(default_factory=dict)
    hook_cursor: dict[str, int] = field(default_factory=dict)
    root: Branch = field(default_factory=Branch)
    spawned: list[asyncio.Future[Any]] = field(default_factory=list)
    unwinding: BaseException | None = None
    """Engine control flow a branch raised that the workflow's code may have swallowed
    (``asyncio.gather(..., return_exceptions=True)`` returns it as a value): the run stops."""
    task: asyncio.Task[Any] | None = None
    """The task running an async workflow's own code."""
    outside: int = 0
    """Durable operations of an async run awaiting the outside now (a step's code, a short wait)."""
    held: dict[asyncio.Task[Any], asyncio.Future[None]] = field(default_factory=dict)
    """Branch tasks that suspended, held until the rest of the run waits too (see ``hold``)."""
    _looking: bool = False
    handed_out: list[tuple[Coroutine[Any, Any, Any], str]] = field(default_factory=list)
    """Durable calls of an async workflow, to find one never awaited (see ``forgotten``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    flushing: bool = False
    """A thread is writing a group of events to the world (see ``record``)."""
    in_flight: list[NewEvent] = field(default_factory=list)
    """The events of the write under way (while ``flushing``)."""
    independent_groups: set[str] = field(default_factory=set)
    """Operation ids of ``durable.parallel``/``map`` groups, whose branches cannot depend on
    each other (see ``settle_before``)."""
    queued: list[_Write] = field(default_factory=list)
    lease_ttl: float | None = None
    """How long this worker's lease on the run lasts unrenewed (see ``begin_step``)."""
    lease_seen_at: float = 0.0
    """When (the world's clock) the lease was last taken or renewed (an append, which does not
    renew it, proves nothing: it may land on a lease that lapsed and that nobody took yet)."""
    _shape: tuple[frozenset[str], dict[str, int]] | None = None
    """The loaded log's groups and furthest positions per branch (see ``_log_shape``)."""
    unwritten: dict[str, NewEvent] = field(default_factory=dict)
    """Results of this run's steps that the world refused to record (a full disk, an outage),
    by operation id, kept by the runtime across executions here: the step is not run again
    when the run retries, its result is written again (see ``result_kept``)."""
    failed_writes: int = 0
    """How many writes of this execution the world refused (see ``settle_before``)."""
    write_failure: BaseException | None = None
    """The last of them: a lost lease ends the execution (no step may start after it)."""
    waiting_writers: int = 0
    """Threads waiting for a write in flight to finish (see ``_write_queued``)."""
    _written: threading.Condition | None = None
    active: int = 1
    """Threads running this run's code and not lingering (see ``linger``)."""
    _activity: threading.Condition | None = None
    _cancelled: threading.Event | None = None
    _async_waits: list[asyncio.Future[None]] = field(default_factory=list)
    """In-process waits of an async run, which a cancel sent here ends (see ``signal_cancel``)."""
    undelivered: list[tuple[int, str]] = field(default_factory=list)
    """Recorded step outcomes of an async run not yet handed back by a replay: a heap of
    ``(seq, op id)`` (see ``in_log_order``)."""
    delivered: set[str] = field(default_factory=set)
    gated: list[tuple[int, str, asyncio.Future[None]]] = field(default_factory=list)
    """Tasks waiting to hand back a recorded outcome, a heap by ``seq`` (see ``in_log_order``)."""
    _releasing: bool = False
    _release_turns: int = 0
    _lingering: list[asyncio.Future[None]] = field(default_factory=list)
    """Async branches waiting beside a step under way (see ``linger_async``)."""

    def hand_out(self, call: Coroutine[Any, Any, T], what: str) -> Coroutine[Any, Any, T]:
        """Note a durable call of an async workflow: it does nothing until awaited."""
        if len(self.handed_out) >= 64:  # keep only the ones not started yet
            self.handed_out[:] = [item for item in self.handed_out if _not_started(item[0])]
        self.handed_out.append((call, what))
        return call

    def forgotten(self) -> list[str]:
        """The durable calls never awaited (closed now: they will never run)."""
        left = [(call, what) for call, what in self.handed_out if _not_started(call)]
        self.handed_out.clear()
        for call, _ in left:
            call.close()
        return [what for _, what in left]

    def _written_changed(self) -> threading.Condition:
        # Called with self.lock held. Made on first need: most runs never have two writers.
        if self._written is None:
            self._written = threading.Condition(self.lock)
        return self._written

    def load(self, events: Sequence[Event]) -> None:
        """Index recorded events by operation id."""
        self._shape = None
        for event in events:
            self.seen_seq = max(self.seen_seq, event.seq)
            if event.kind == "run_retried":
                self._forget_failures(event)
                continue
            if event.op_id is None:
                continue
            if event.op_id not in self.visited:
                self.ahead.add(event.op_id)
            if event.kind == "step_retrying":
                self.retries.setdefault(event.op_id, []).append(event)
            elif event.kind == "hook_received":
                self.hook_payloads.setdefault(event.op_id, []).append(event)
            elif event.kind in ("hook_timed_out", "hook_disposed"):
                self.hook_ends[event.op_id] = event
            else:
                self.recorded[event.op_id] = event
                if self.is_async and event.kind in _OUTCOMES and event.op_id not in self.visited:
                    heapq.heappush(self.undelivered, (event.seq, event.op_id))

    def _log_shape(self) -> tuple[frozenset[str], dict[str, int]]:
        """The loaded log's groups, and how far each branch went.

        Groups are operations whose branches recorded operations of their own; how far a branch
        went is, per branch path, the furthest position at which it recorded anything.
        """
        if self._shape is None:
            groups: set[str] = set()
            furthest: dict[str, int] = {}
            for op_id in [*self.recorded, *self.retries]:
                parts = op_id.split(".")
                for level, part in enumerate(parts):
                    if not part.isdigit():
                        break
                    path = ".".join(parts[:level]) + ("." if level else "")
                    furthest[path] = max(furthest.get(path, 0), int(part))
                    if level:
                        groups.add(".".join(parts[:level]))
            self._shape = (frozenset(groups), furthest)
        return self._shape

    def passed(self, branch: Branch) -> bool:
        """Whether the recorded execution went past the branch's next position.

        That is: it recorded an operation there or later in the branch, or in the branches of a
        group there.
        """
        return self._log_shape()[1].get(branch.path, 0) > branch.counter

    def group_at(self, op_id: str) -> None:
        """Check that the log has no single operation where a group of branches starts now."""
        event = self.recorded.get(op_id)
        if event is None or (event.kind == "value_recorded" and event.name == CANCEL_NOTICED):
            return
        raise self.diverged(op_id, event, _GROUP)

    def _forget_failures(self, retried: Event) -> None:
        """A retried run runs again the steps whose failure failed it, from their first attempt."""
        for op_id in json.loads(retried.data or b"{}").get("steps", []):
            event = self.recorded.get(op_id)
            if event is not None and event.kind == "step_failed":
                del self.recorded[op_id]
            self.retries.pop(op_id, None)

    def refresh(self) -> bool:
        """Read hook payloads delivered since the log was loaded; returns whether any came."""
        if self.recorder is None:
            return False
        with self.lock:
            # A write in flight may be in the log already but not yet in own_appended: reading
            # now would count it twice, and a payload arriving next would go unnoticed.
            while self.flushing:
                self.waiting_writers += 1
                try:
                    self._written_changed().wait()
                finally:
                    self.waiting_writers -= 1
            fresh = self.recorder.read_events(self.seen_seq)
            known = {e.seq for payloads in self.hook_payloads.values() for e in payloads}
            arrived = False
            for event in fresh:
                self.seen_seq = max(self.seen_seq, event.seq)
                if event.kind == "hook_received" and event.op_id and event.seq not in known:
                    self.hook_payloads.setdefault(event.op_id, []).append(event)
                    arrived = True
            self.own_appended = 0
        return arrived

    def write_directly(self, write: Callable[[], object]) -> bool:
        """Append one event outside :meth:`record` (a hook's creation or end), counted as ours.

        Under the run's lock, so :meth:`refresh` never reads the log between the write and its
        count. A conditional write that returns False wrote nothing and is not counted.
        """
        # Values taken before (now(), uuid4(), ...) are recorded first: the write may hand them to
        # the outside (a hook token built from uuid4()), and a crash must not let them change.
        self.record(replay_point=False)
        with self.lock:
            if write() is False:
                return False
            self.own_appended += 1
            return True

    def seen_now(self) -> int:
        """:attr:`expected_seq`, read consistently with :meth:`refresh`."""
        with self.lock:
            return self.expected_seq

    def suspend_for_outside(self, seen: int, when: float | None, reason: str) -> BaseException:
        """The exception that suspends a branch waiting on a hook or a child run.

        ``seen``: :meth:`seen_now` from before the branch looked for what it waits on. Another
        branch may have read the log since (and taken what this one waits on into the run's
        state): the suspension must still wake the run for anything after ``seen``.
        """
        with self.lock:
            self.waits_for_hook = True
            if self.outside_seen_seq is None or seen < self.outside_seen_seq:
                self.outside_seen_seq = seen
        return self.suspend_until(when, reason)

    @property
    def expected_seq(self) -> int:
        """The log's newest seq if nobody else appended since we last read it."""
        return self.seen_seq + self.own_appended

    @property
    def pure(self) -> bool:
        """Whether this context only replays, performing nothing."""
        return self.recorder is None

    # -- bookkeeping -------------------------------------------------------------------------

    def lookup(self, op_id: str, family: str, name: str) -> Event | None:
        """The event recorded at ``op_id``; raises :class:`Diverged` if it is another operation."""
        self.visited.add(op_id)
        self.ahead.discard(op_id)
        event = self.recorded.get(op_id)
        if event is None:
            retries = self.retries.get(op_id)
            if not retries:
                if self.recorded and op_id in self._log_shape()[0]:
                    # The recorded execution ran a group of branches here: running this
                    # operation live would repeat what they did.
                    raise self.diverged(op_id, None, describe_op(family, name))
                return None
            event = retries[-1]
            if event.name != name or family != "step":
                raise self.diverged(op_id, event, describe_op(family, name))
            return None
        if _FAMILY.get(event.kind) != family or event.name != name:
            raise self.diverged(op_id, event, describe_op(family, name))
        return event

    def diverged(
        self, op_id: str, recorded: Event | None, new: str, *, located: bool = True
    ) -> Diverged:
        """The divergence at ``op_id``: the log holds ``recorded`` (None: a group of branches).

        ``located``: the workflow's code is on the stack, at the call that diverged.
        """
        patch_id = None
        if recorded is not None and recorded.kind == "value_recorded" and recorded.name:
            if recorded.name.startswith(PATCH_MARKER):
                patch_id = recorded.name.removeprefix(PATCH_MARKER)
        error = NonDeterminismError(
            op_id,
            _GROUP if recorded is None else _describe(recorded),
            new,
            patch_id,
            None if self.pure else self.run_id,
            call_site() if located else None,
        )
        return Diverged(error)

    def record_last(self, event: NewEvent | None, update: RunUpdate) -> None:
        """The execution's last write: its outcome or suspension, after everything buffered.

        Raises:
            LeaseLost, WorldError: as ``World.append``; nothing of this write was recorded.
        """
        assert self.recorder is not None
        with self.lock:
            batch = [*self.buffered, event] if event is not None else list(self.buffered)
            self.buffered.clear()
            self.deferred_at = None
            mine = _Write(batch, update=update)
            self.queued.append(mine)
        self._write_queued(mine)
        if mine.error is None:
            return
        if isinstance(mine.error, WorldError) and not isinstance(mine.error, LeaseLost):
            # The outcome could not be written (the world may refuse only its run update): the
            # step results it carried are saved alone if they can be, so they never run again.
            with self.lock:
                carried = [e for e in batch if e is not event and e.kind != "value_recorded"]
                rest = [*self.buffered, *carried]
                self.buffered.clear()
            try:
                if rest:
                    self.recorder.record(rest)
                    with self.lock:
                        self.own_appended += len(rest)
            except DurableError:
                pass  # the outcome's error below says what failed
        raise mine.error

    def flush_deferred(self, deferred_before: float) -> None:
        """Write the step results deferred before a time (``time.monotonic()``), if any.

        Called by the flusher thread. Should the write fail, the results stay buffered for the
        run's next write, which meets the failure itself and handles it.
        """
        with self.lock:
            if self.deferred_at is None or self.deferred_at > deferred_before:
                return
            self.deferred_at = None
            if self.recorder is None or not self.buffered:
                return
            mine = _Write(list(self.buffered), background=True)
            self.buffered.clear()
            self.queued.append(mine)
        self._write_queued(mine)

    def check_fully_replayed(self) -> None:
        """At the end of a run, every recorded operation must have been reached again."""
        missing = [op for op in self.recorded if op not in self.visited]
        if missing:
            op_id = min(missing, key=_op_sort_key)
            raise self.diverged(
                op_id, self.recorded[op_id], "nothing (the workflow returned)", located=False
            )

    def record(self, *events: NewEvent, replay_point: bool = True) -> None:
        """Record events durably (with any buffered values before them).

        ``replay_point``: under forced replay, suspend once written (every durable point does).
        """
        if self.recorder is None:
            self.new_events.extend(events)
            return
        with self.lock:
            if not events and not self.buffered:
                # A write in flight (the flusher's) may carry what the caller is about to depend
                # on: it is durable once that write is (if it fails, its events are buffered
                # again, and written below).
                self._await_writes()
            batch = [*self.buffered, *events] if self.buffered else list(events)
            self.buffered.clear()
            self.deferred_at = None
            if not batch:
                return
            mine = _Write(batch)
            self.queued.append(mine)
        self._write_queued(mine)
        if mine.error is not None:
            # Nothing of this write was recorded: a step whose completion it carried runs again.
            raise _refusal(mine.error)
        if self.force_replay and replay_point:
            self.waits.append(self.clock())
            raise self._unwinding_with(Suspend("replaying (forced replay mode)"))

    def settle_before(self, op_id: str) -> None:
        """Make durable what the operation at ``op_id`` may depend on, before it starts.

        That is whatever came before it in its branch, the branches it forked from and the
        branches that joined them before it; the results and values of a sibling branch of a
        ``durable.parallel``/``map`` group stay deferred (the flusher or the run's next write
        takes them), so that branches starting steps one after another do not each write
        their siblings' results alone. (A DAG's or a task group's branches may wait on each
        other's results: there every earlier event counts.)
        """
        with self.lock:
            if not any(self._precedes(e, op_id) for e in self.buffered):
                failed = self.failed_writes
                self._await_writes(lambda event: self._precedes(event, op_id))
                if self.failed_writes == failed:
                    return
                error = self.write_failure
            else:
                error = None
        if error is not None:
            # A write that carried what this operation depends on was refused while it
            # waited: what it depends on is not durable, and may never be (a lost lease).
            raise _refusal(error)
        self.record(replay_point=False)

    def _precedes(self, event: NewEvent, op_id: str) -> bool:
        """Whether the operation ``op_id`` may depend on ``event``.

        Ids alternate operation and branch index (``3.5.1``: operation 3, its branch 5,
        operation 1 there). Two ids that first differ at a branch index lie in sibling branches
        of one group: independent if the group is a ``parallel``/``map``. Otherwise the event's
        operation (or the group holding it, joined since) came first in the branch they share.
        """
        if event.op_id is None:
            return True
        mine, theirs = op_id.split("."), event.op_id.split(".")
        for level, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return level % 2 == 0 or ".".join(mine[:level]) not in self.independent_groups
        return True

    def _await_writes(self, carrying: Callable[[NewEvent], bool] | None = None) -> None:
        # Called with self.lock held: until no write of this run is queued or in flight (only
        # those carrying an event ``carrying`` picks, if given).
        while self.flushing or self.queued:
            if carrying is not None:
                pending = [*self.in_flight, *(e for write in self.queued for e in write.events)]
                if not any(carrying(event) for event in pending):
                    return
            self.waiting_writers += 1
            try:
                self._written_changed().wait()
            finally:
                self.waiting_writers -= 1

    def _in_workflow_code(self) -> bool:
        # The workflow's own code (not a branch of durable.parallel/map, which goes on to its
        # own wait): it may be holding what a gather returned in place of the error.
        frame = current_frame.get()
        return frame is not None and frame.branch is self.root

    def note_unwinding(self, error: BaseException | None) -> None:
        """A branch ended in ``error``: if it is engine control flow, nothing more may run."""
        flow = control_flow(error)
        if isinstance(flow, (LeaseLost, Suspend, Diverged, StorageUnavailable)) and (
            self.unwinding is None or _rank(flow) < _rank(self.unwinding)
        ):
            self.unwinding = self.root.stopped = flow

    def ending(self, exc: BaseException) -> BaseException:
        """What ends this execution, given what the workflow's code raised.

        Engine control flow wins over the workflow's own errors, as in ``durable.parallel``:
        it may come wrapped in an exception group (``asyncio.TaskGroup``, ``except*``), or a
        branch's may have reached the code only as a value, or as a user error it led to. The
        run then suspends (or stops), and a user error beside it comes again on replay.
        """
        flow = control_flow(exc)
        if flow is not None:
            return flow
        if self.unwinding is not None and isinstance(exc, Exception):
            return self.unwinding
        return exc

    def past_deadline(self) -> bool:
        """Whether the run's timeout has passed: from then on it counts as cancelled."""
        if self.deadline is not None and not self.timed_out and self.clock() >= self.deadline:
            self.timed_out = self.cancel_requested = True
        return self.timed_out

    def check_cancel(self) -> None:
        """Stop here if the run was cancelled, or hand it back if this worker is stopping."""
        if self.unwinding is not None and self._in_workflow_code():
            raise self.unwinding
        if (self.cancel_requested or self.past_deadline()) and not self.compensating:
            raise self.cancelled_here()
        if self.release_requested:
            raise self.suspend_until(self.clock(), "handed back by a stopping worker")

    def cancelled_here(self) -> Cancelled:
        """``Cancelled``, recording where the workflow's code stops for it (see ``stopped_here``).

        The mark takes the branch's next operation id, live and on replay alike. A log recorded
        before marks were taken has the compensation's first undo step there instead: then no
        mark is taken, and that step keeps its id.
        """
        frame = current_frame.get()
        if frame is not None and frame.ctx is self:
            branch = frame.branch
            if self.upcoming(branch) is None or self.cancel_marked_next(branch):
                self.value(branch.next_op(), CANCEL_NOTICED, lambda: True)
        return Cancelled(self.run_id)

    def upcoming(self, branch: Branch) -> Event | None:
        """What the log recorded at the branch's next operation id, if anything."""
        return self.recorded.get(f"{branch.path}{branch.counter + 1}")

    def cancel_marked_next(self, branch: Branch) -> bool:
        """Whether the recorded execution stopped for its cancellation at the branch's next id."""
        upcoming = self.upcoming(branch)
        return (
            upcoming is not None
            and upcoming.kind == "value_recorded"
            and upcoming.name == CANCEL_NOTICED
        )

    def signal_cancel(self) -> None:
        """Its cancellation was requested in this process: end an in-process wait now."""
        self.cancel_requested = True
        self._cancel_signal().set()
        with self.lock:
            waits = list(self._async_waits)
        for woken in waits:  # called from any thread: each wait's loop ends it
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                woken.get_loop().call_soon_threadsafe(_settle, woken)

    def _cancel_signal(self) -> threading.Event:
        with self.lock:
            if self._cancelled is None:
                self._cancelled = threading.Event()
            return self._cancelled

    def stopped_here(self) -> None:
        """On replay, raise ``Cancelled`` where the recorded execution stopped for it.

        Called as a wait begins (a sleep, a retry's delay, a hook, a child run): replayed later,
        the wait may end otherwise (its time passed, a payload came), and the workflow would take
        another path than the one its recorded undo steps followed.
        """
        if self.compensating:
            return
        frame = current_frame.get()
        if frame is not None and frame.ctx is self and self.cancel_marked_next(frame.branch):
            raise self.cancelled_here()

    def block(self, command: StepCommand | None = None) -> Blocked:
        """Note what a pure replay needs and return the exception that suspends it."""
        if command is not None:
            self.commands.append(command)
        return self._unwinding_with(Blocked("waiting for commands"))

    def suspend_until(self, when: float | None, reason: str) -> Suspend | Cancelled:
        """Register a wake-up time and return the exception that unwinds the run.

        A cancelled run does not go back to sleep: it ends here (after replaying to this point).
        A run with a timeout wakes at its deadline at the latest.
        """
        if not self.compensating:  # undo steps wait out their retries, deadline or not
            if self.cancel_requested or self.past_deadline():
                return self.cancelled_here()
            if self.deadline is not None:
                when = self.deadline if when is None else min(when, self.deadline)
        self.waits.append(when)
        return self._unwinding_with(Blocked(reason) if self.pure else Suspend(reason))

    def _unwinding_with(self, suspension: _S) -> _S:
        """Mark the current branch as unwinding with ``suspension`` (see ``Branch.next_op``)."""
        frame = current_frame.get()
        if frame is not None and frame.ctx is self:
            frame.branch.stopped = suspension
        return suspension

    def wait_until(self, when: float) -> None:
        """Block until ``when``: in-process if it is soon, otherwise by suspending the run.

        While other branches of the run still work, a long wait lingers in-process too (see
        :meth:`linger`): the run suspends once all its branches wait.
        """
        self.stopped_here()
        since = time.monotonic()
        while True:
            remaining = when - self.clock()
            if remaining <= 0:
                return
            if self.pure or remaining > self.inline_wait_limit:
                if self.linger(when, since):
                    self.check_cancel()
                    continue
                raise self.suspend_until(when, "sleeping")
            # Recording the sleep may have told of a cancel: stop now, not after the wait.
            self.check_cancel()
            self._cancel_signal().wait(remaining)  # a cancel sent here ends it early
            self.check_cancel()
            return

    # -- branches waiting beside each other ------------------------------------------------

    def _activity_changed(self) -> threading.Condition:
        # Called with self.lock held.
        if self._activity is None:
            self._activity = threading.Condition(self.lock)
        return self._activity

    def branches_start(self, starting: int) -> None:
        """This thread hands the run to branch threads and waits for them.

        ``starting`` branches count as running from now (each has a thread of its own that
        takes it at once; they do not call :meth:`branch_entered`): a branch that got going
        first and lingered must not take its siblings, not yet entered, for waiting ones.
        """
        with self.lock:
            self.active += starting - 1

    def branches_done(self) -> None:
        """The branch threads this thread waited for have all ended."""
        with self.lock:
            self.active += 1

    def branch_entered(self) -> None:
        """A branch thread starts running the run's code."""
        with self.lock:
            self.active += 1

    def branch_left(self) -> None:
        """A branch thread has ended (returned, raised, or suspended)."""
        with self.lock:
            self.active -= 1
            self._activity_changed().notify_all()

    def linger(self, until: float | None, since: float | None = None) -> bool:
        """Wait in-process for a moment while other branches of this run still work.

        A branch about to suspend (on a hook, a child run, a long sleep) would only stop here:
        the run suspends when every branch has, so a branch still running would hold up what
        this one waits for, and whatever depends on it. Instead it waits here, looking again
        every so often, until it may go on or every other branch waits too.

        Args:
            until: when the branch's wait ends anyway (a sleep's wake-up, a hook's timeout).
            since: when (``time.monotonic()``) the branch began waiting: it looks less often
                the longer it waits (every 0.2 s at first, every 2 s after 20 s), since each
                look may be a request to the world.

        Returns:
            True: look again (time passed, or something may have arrived). False: every other
            branch waits or has ended (or the run must stop): suspend now.
        """
        if self.pure or self.is_async or self.force_replay or self.release_requested:
            return False
        with self.lock:
            if self.active <= 1 or self.cancel_requested:
                return False
            self.active -= 1
            self._activity_changed().notify_all()
            try:
                waited = time.monotonic() - since if since is not None else 0.0
                timeout = min(max(_LINGER_POLL, waited / 10), _LINGER_POLL_MAX)
                if until is not None:
                    timeout = min(timeout, max(until - self.clock(), 0.0))
                self._activity_changed().wait(timeout)
            finally:
                self.active += 1
        return True

    async def linger_async(self, until: float | None, since: float) -> bool:
        """Async :meth:`linger`: wait a moment while a step of the run is under way.

        A branch about to suspend (on a hook, a child run, a long sleep) would be held until
        the rest of the run waits too (see :meth:`hold`), so what it waits for would only be
        seen once the last sibling step finished. Instead it looks again every so often while
        another branch still works, and as soon as none does.

        Returns:
            True: look again. False: no other branch works (or the run must stop): suspend now.
        """
        if self.pure or self.force_replay or self.release_requested or self.cancel_requested:
            return False
        current = asyncio.current_task()
        others = (t for t in (self.task, *self.spawned)
                  if t is not None and t is not current and not t.done())
        if not self.outside and not any(_ready(t) for t in others):
            return False
        waited = time.monotonic() - since
        timeout = min(max(_LINGER_POLL, waited / 10), _LINGER_POLL_MAX)
        if until is not None:
            timeout = min(timeout, max(until - self.clock(), 0.0))
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lingering.append(woken)
        try:
            await self._sleep_unless_cancelled(timeout, woken)
        except asyncio.CancelledError:
            # A sibling failed in an asyncio.TaskGroup: as if this branch had suspended at
            # once, the suspension wins over that error (see hold), whatever the timing.
            return False
        finally:
            self._lingering.remove(woken)
        return True

    async def wait_until_async(self, when: float) -> None:
        """Async :meth:`wait_until`."""
        self.stopped_here()
        since = time.monotonic()
        while True:
            remaining = when - self.clock()
            if remaining <= 0:
                return
            if self.pure or remaining > self.inline_wait_limit:
                if await self.linger_async(when, since):
                    self.check_cancel()
                    continue
                raise self.suspend_until(when, "sleeping")
            self.check_cancel()
            with self.awaiting_outside():
                await self._sleep_unless_cancelled(remaining)
            self.check_cancel()
            return

    async def _sleep_unless_cancelled(
        self, seconds: float, woken: asyncio.Future[None] | None = None
    ) -> None:
        """``asyncio.sleep(seconds)``, ended early by a cancel sent here (as ``wait_until``'s).

        ``woken``: a future someone else may settle to end it early too.
        """
        if woken is None:
            woken = asyncio.get_running_loop().create_future()
        with self.lock:
            self._async_waits.append(woken)
        try:
            if not self.cancel_requested:  # else it came before the wait was listed
                await asyncio.wait((woken,), timeout=seconds)
        finally:
            with self.lock:
                self._async_waits.remove(woken)
            woken.cancel()

    # -- async branches waiting beside each other ------------------------------------------

    @contextlib.contextmanager
    def awaiting_outside(self) -> Iterator[None]:
        """Around a live durable operation's await in an async run: held branches wait for it."""
        self.outside += 1
        try:
            yield
        finally:
            self.outside -= 1
            if not self.outside:
                for woken in self._lingering:  # they may have to suspend now
                    if not woken.done():
                        woken.set_result(None)
                self._look_soon()

    async def hold(self) -> None:
        """Hold the current task, a branch that suspended, until the rest of the run waits too.

        ``asyncio.TaskGroup`` cancels a group's other tasks as soon as one ends in an exception.
        A branch's suspension must not cut the others short (a step halfway, work the branch's
        hook may wait for): as under ``asyncio.gather`` and ``durable.parallel``, they go on
        until they end or suspend too, and the run suspends once none of it can go on.
        Cancelled while held (a sibling failed), it raises ``CancelledError`` at once.
        """
        task = asyncio.current_task()
        if task is None:
            return
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.held[task] = released
        self._look_soon()
        try:
            await released
        finally:
            self.held.pop(task, None)

    async def catch_up(self) -> None:
        """Let the run's other tasks replay what the log holds before this one runs a step live.

        A replay's tasks start in order, so a step no record covers could start before a
        sibling replays the failure that, the first time, made an ``asyncio.TaskGroup`` cancel
        it before it finished (nothing of it recorded): it would run again on every replay.
        While the log holds operations not reached yet and another task of the run is ready,
        this task yields, so such a cancellation reaches it before its step starts.
        """
        current = asyncio.current_task()
        running = -1
        for _ in range(_CATCH_UP_TURNS):
            if not self.ahead:
                return
            others = [t for t in (self.task, *self.spawned)
                      if t is not None and t is not current and not t.done()]
            # A task that just ended has its done callbacks (a TaskGroup's abort) still to run.
            if not any(_ready(t) for t in others) and len(others) == running:
                return
            running = len(others)
            await asyncio.sleep(0)

    async def in_log_order(self, event: Event) -> None:
        """Hand back a recorded step outcome only after those the log holds before it.

        Live, the outcomes of concurrent steps reach the workflow in the order they are
        recorded, and that order decides which error ``asyncio.gather`` raises, or which step
        ``asyncio.as_completed`` yields first. A replay has every outcome at once: handed back
        as tasks start, a workflow catching a gather's error could see another one than the
        first time, and take another path. So a task holding an outcome waits here while the
        log holds an earlier one not handed back yet, unless no other task of the run can run
        (the earlier one's step is not reached in this replay).
        """
        op_id = event.op_id or ""
        if self._first_undelivered() < event.seq:
            released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self.gated, (event.seq, op_id, released))
            self._release_soon()
            try:
                await released
            finally:
                self.delivered.add(op_id)  # handed back, or given up by its cancelled task
                released.cancel()
                self._release_soon()
        self.delivered.add(op_id)

    def _first_undelivered(self) -> float:
        while self.undelivered and self.undelivered[0][1] in self.delivered:
            heapq.heappop(self.undelivered)
        return self.undelivered[0][0] if self.undelivered else float("inf")

    def _release_soon(self) -> None:
        if not self._releasing:
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        self._releasing = False
        while self.gated and self.gated[0][2].done():
            heapq.heappop(self.gated)
        if not self.gated:
            self._look_soon()  # branches held meanwhile (see _look)
            return
        if self.gated[0][0] > self._first_undelivered() and self._release_turns < _CATCH_UP_TURNS:
            running = (t for t in (self.task, *self.spawned) if t is not None and not t.done())
            if any(_ready(t) for t in running):  # it may reach the earlier outcome
                self._release_turns += 1
                self._release_soon()
                return
        self._release_turns = 0
        heapq.heappop(self.gated)[2].set_result(None)

    def _look_soon(self) -> None:
        if self.held and not self._looking:
            self._looking = True
            asyncio.get_running_loop().call_soon(self._look)

    def _look(self) -> None:
        self._looking = False
        if not self.held or self.outside or self.gated:
            return  # the operation's end (or the last recorded outcome's) looks again
        for task in (self.task, *self.spawned):
            if task is None or task.done() or task in self.held:
                continue
            if _ready(task):
                self._look_soon()  # after it has run (it is queued already)
                return
        held, self.held = self.held, {}
        for released in held.values():
            if not released.done():
                released.set_result(None)

    # -- steps -------------------------------------------------------------------------------

    def step_outcome(self, event: Event) -> Any:
        """The recorded result of a step, or its recorded error raised again."""
        if event.kind == "step_completed":
            return loads(event.data) if event.data is not None else None
        info = json.loads(event.data or b"{}")
        raise rebuild_error(event.name or "?", info)

    def begin_step(
        self, op_id: str, step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, float | None]:
        """Attempt number and pending retry time of a step about to run live."""
        retries = self.retries.get(op_id)
        attempt, retry_at = 1, None
        if retries:
            last = json.loads(retries[-1].data or b"{}")
            attempt, retry_at = len(retries) + 1, float(last["retry_at"])
        if self.pure:
            if retry_at is not None and retry_at > self.clock():
                raise self.suspend_until(retry_at, "waiting to retry")
            raise self.block(StepCommand(op_id, step.name, args, kwargs))
        # What the step may depend on is durable before it has any effect: results of earlier
        # steps still deferred, and values (uuid4(), now()) it may take as arguments.
        self.settle_before(op_id)
        if time.monotonic() - self.written_at > _QUIET:
            # Writes bring back cancellation requests; after a quiet spell (slow workflow code,
            # its results written by the flusher) ask, so a cancelled run starts no more steps.
            self.ask_cancelled()
        self.check_cancel()
        self.check_lease()  # last: the calls above may have waited on the world for long
        return attempt, retry_at

    def check_lease(self) -> None:
        """Raise ``LeaseLost`` rather than start a step once another worker may own the run.

        A worker paused longer than its lease (a stopped process, a VM migration, a long
        garbage collection), or whose renewals the world did not answer for as long, learns
        it lost the run at its next write; steps of other branches, or the next step after a
        long one, would start before that write, and a write that lands on a lapsed lease
        nobody took yet proves nothing. So when the lease has not been seen taken or renewed
        for half its time, renew it and ask the world first.
        """
        if isinstance(self.write_failure, WorldError):
            # A write of this execution was refused: what it carried (a result another branch
            # may depend on) is not durable, and the execution is unwinding to retry the run
            # (or another worker executes it now: a lost lease).
            raise _refusal(self.write_failure)
        if self.lease_ttl is None or self.recorder is None:
            return
        while True:
            now = self.clock()
            if now - self.lease_seen_at <= self.lease_ttl / 2:
                return
            held, cancelled = self.recorder.lease_state(self.lease_ttl)  # renews, then reads
            if not held:
                self.write_failure = LeaseLost(self.run_id)
                raise self.write_failure
            # Renewed after ``now``; if answering took long, the loop asks again.
            self.lease_seen_at = now
            self.cancel_requested = self.cancel_requested or cancelled

    def lease_renewed(self, at: float) -> None:
        """The runtime renewed this worker's leases at ``at`` (the world's clock, before)."""
        self.lease_seen_at = max(self.lease_seen_at, at)

    def ask_cancelled(self) -> bool:
        """Whether the run's cancellation was requested, asking the world unless known here."""
        if not self.cancel_requested and self.recorder is not None:
            self.cancel_requested = self.recorder.cancel_requested()
            self.written_at = time.monotonic()
        return self.cancel_requested or self.past_deadline()

    def step_info(self, op_id: str, step: StepDefinition, attempt: int) -> StepInfo:
        """The :class:`StepInfo` for one attempt."""
        return StepInfo(self.run_id, op_id, step.name, attempt)

    def step_succeeded(self, op_id: str, step: StepDefinition, result: Any) -> Any:
        """Record a step's result and return what the workflow gets: what a replay would read.

        Raises SerializationError (writing nothing) if the result cannot be recorded. The
        workflow sees the recorded value, not the step's own object, live as on replay: a
        ``defaultdict``, a ``ZoneInfo`` inside a pydantic model or a shared list would otherwise
        behave one way live and another after a crash. Immutable scalars are returned as they are.

        With ``defer_results``, the result rides along with the run's next write (the next step
        starts only after it, see ``begin_step``), or the flusher writes it once it has waited
        ``MAX_DEFER``: slow code of the workflow's own between steps cannot leave it unwritten
        for long, so a crash runs again at most the step that finished just before it.
        """
        data = dumps(result, serializer=step.serializer, what=f"result of step {step.name!r}")
        return self._completed(NewEvent("step_completed", op_id, step.name, data), result)

    def result_kept(self, op_id: str, step: StepDefinition) -> NewEvent | None:
        """The step's result from an earlier execution here whose write the world refused."""
        event = self.unwritten.get(op_id)
        return event if event is not None and event.name == step.name else None

    def step_succeeded_before(self, event: NewEvent) -> Any:
        """Record again a result kept by ``result_kept``, instead of running the step again."""
        result = loads(event.data) if event.data is not None else None
        return self._completed(event, result)

    def _completed(self, event: NewEvent, result: Any) -> Any:
        data = event.data
        if self.defer_results and self.recorder is not None:
            with self.lock:
                self.buffered.append(event)
                if self.deferred_at is None:
                    self.deferred_at = time.monotonic()
        else:
            self.record(event)
        if type(result) in _IMMUTABLE_SCALARS or data is None:
            return result
        return loads(data)

    def _write_queued(self, mine: _Write) -> None:
        """Write ``mine`` with whatever other branches queued meanwhile, in one append.

        Parallel branches finish steps at the same moment; while one write is in flight the
        others queue, and the next write takes all of them (group commit).
        """
        assert self.recorder is not None
        with self.lock:
            while not mine.done and self.flushing:
                self.waiting_writers += 1
                try:
                    self._written_changed().wait()
                finally:
                    self.waiting_writers -= 1
            if mine.done:
                return
            self.flushing = True
            group, self.queued = self.queued, []
            events = [event for write in group for event in write.events]
            self.in_flight = events
        update = next((write.update for write in group if write.update is not None), None)
        error: BaseException | None = None
        cancel = False
        try:
            cancel = self.recorder.record(events, update)
        except BaseException as exc:
            error = exc
        with self.lock:
            if error is None:
                self.own_appended += len(events)
                self.cancel_requested = self.cancel_requested or cancel
                self.written_at = time.monotonic()
            else:
                self.failed_writes += 1
                if not isinstance(self.write_failure, LeaseLost):
                    self.write_failure = error
                # The world recorded nothing. Keep the values for a retry, and what the flusher
                # was writing for the run's next write (which meets the failure and reports it).
                transient = isinstance(error, WorldError) and not isinstance(error, LeaseLost)
                if transient:
                    for write in group:
                        for event in write.events:
                            if event.kind == "step_completed" and event.op_id is not None:
                                self.unwritten[event.op_id] = event
                self.buffered[:0] = [
                    e
                    for write in group
                    for e in write.events
                    if write.background or (transient and e.kind == "value_recorded")
                ]
            for write in group:
                write.error = error
                write.done = True
            self.flushing = False
            self.in_flight = []
            if self.waiting_writers:
                self._written_changed().notify_all()

    def step_errored(
        self, op_id: str, step: StepDefinition, attempt: int, exc: BaseException
    ) -> float:
        """Record a failed attempt. Returns when to retry, or raises the final error."""
        info = error_to_dict(exc)
        final = isinstance(exc, FatalError) or attempt >= step.retry.max_attempts
        if final:
            info["attempts"] = attempt
            self.record(NewEvent("step_failed", op_id, step.name, _json(info)))
            # What a replay will raise, live too: the workflow's except clauses must take the
            # same path and read the same attributes (a requests.HTTPError's response is not
            # recorded). It carries the step's traceback, not its exception as a cause, which a
            # replay would not have.
            error = rebuild_error(step.name, info)
            raise error.with_traceback(exc.__traceback__) from None
        delay = step.retry.delay_before(attempt + 1)
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            try:
                delay = parse_duration(exc.retry_after)  # type: ignore[arg-type]
            except InvalidDuration as bad:
                # The step's own error stays what it raised; only its hint is ignored.
                info["retry_after_ignored"] = str(bad)
                log.warning("step %r: retry_after ignored (%s); retrying as its policy says",
                            step.name, bad)
        retry_at = self.clock() + delay
        self.check_wait(retry_at, f"retrying step {step.name!r} in {delay:g} s")
        info.update(attempt=attempt, retry_at=retry_at)
        self.record(NewEvent("step_retrying", op_id, step.name, _json(info)))
        return retry_at

    # -- recorded values ---------------------------------------------------------------------

    def value(self, op_id: str, name: str, make: Callable[[], Any]) -> Any:
        """A nondeterministic value, recorded the first time and replayed afterwards."""
        event = self.lookup(op_id, "value", name)
        if event is not None:
            return loads(event.data) if event.data is not None else None
        value = make()
        new = NewEvent("value_recorded", op_id, name, dumps(value, what=f"{name}()"))
        # Buffered until the next durable write: anything that depends on the value durably is
        # recorded after it, in the same transaction.
        with self.lock:
            (self.new_events if self.pure else self.buffered).append(new)
        return value

    # -- sleeps ------------------------------------------------------------------------------

    def check_wait(self, until: float, what: str) -> None:
        """Refuse a wait that would wake the run after the world stops keeping its log.

        Raises:
            InvalidDuration: it would; nothing was recorded.
        """
        if self.lifetime is None or until <= self.created_at + self.lifetime.seconds:
            return
        latest = self.created_at + self.lifetime.seconds
        raise InvalidDuration(
            f"{what} would wake run {self.run_id} at {_when(until)}, after its log expires: "
            f"the world keeps a run for {self.lifetime.setting} from its start (this one until "
            f"{_when(latest)}). Nothing was recorded; wait less, or raise the limit."
        )

    def sleep_target(self, op_id: str, seconds: float | None, until: float | None) -> float:
        """The recorded wake-up time of a sleep, recording it on first execution."""
        name = "sleep" if until is None else "sleep_until"
        event = self.lookup(op_id, "sleep", name)
        if event is not None:
            return float(json.loads(event.data or b"{}")["wake_at"])
        self.check_cancel()
        wake_at = until if until is not None else self.clock() + (seconds or 0.0)
        self.check_wait(wake_at, f"durable.{name}()")
        self.record(NewEvent("sleep_started", op_id, name, _json({"wake_at": wake_at})))
        return wake_at


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _settle(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _refusal(error: BaseException) -> BaseException:
    """What a branch raises when a write of its execution was refused with ``error``."""
    if isinstance(error, WorldError) and not isinstance(error, LeaseLost):
        unavailable = StorageUnavailable(error)
        unavailable.__cause__ = error
        return unavailable
    return error


_GROUP = "a group of branches (durable.parallel(), durable.map(), asyncio.gather() or a task)"

_IMMUTABLE_SCALARS = frozenset({str, int, float, bool, type(None)})

_PRECEDENCE: tuple[type[BaseException], ...] = (
    LeaseLost,
    StorageUnavailable,
    Cancelled,
    Diverged,
    Suspend,
)
"""Engine control flow, the first winning when several branches end in it: a run this process
no longer holds, or cannot write, or that was cancelled or diverged, must stop; a suspended
branch must be resumed before the outcome of its group is known."""


def control_flow(error: BaseException | None) -> BaseException | None:
    """The engine control flow ``error`` is, or holds in an exception group (by precedence)."""
    if error is None:
        return None
    leaves = list(_leaves(error))
    for kind in _PRECEDENCE:
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _rank(error: BaseException) -> int:
    return next(i for i, kind in enumerate(_PRECEDENCE) if isinstance(error, kind))


def _ready(task: asyncio.Future[Any]) -> bool:
    """Whether a pending task is about to run: it waits on no future, or on one that is done.

    ``_fut_waiter`` is private to asyncio (both its Task implementations have it); a task
    without it counts as waiting, so that held branches are never held for ever.
    """
    waiter = getattr(task, "_fut_waiter", False)
    if waiter is None:
        return True
    done = getattr(waiter, "done", None)
    return callable(done) and bool(done())


_CATCH_UP_TURNS = 100
_OUTCOMES = frozenset({"step_completed", "step_failed"})
"""The most turns of the event loop a live step waits for its siblings' replay."""

_LINGER_POLL = 0.2
"""Seconds between looks at the log while a branch lingers (hook payloads, child outcomes)."""
_LINGER_POLL_MAX = 2.0


def _not_started(call: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(call) == inspect.CORO_CREATED


def rebuild_error(step_name: str, info: dict[str, Any]) -> BaseException:
    """Re-create a recorded step error: the same type when possible, else :class:`StepFailed`."""
    error = error_from_dict(info)
    if isinstance(error, Exception):  # not SystemExit & co: the workflow must be able to catch it
        return error
    return StepFailed(
        step_name,
        str(info.get("type", "Exception")),
        str(info.get("message", "")),
        str(info.get("traceback", "")),
    )


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def _describe(event: Event) -> str:
    return describe_op(_FAMILY.get(event.kind, event.kind), event.name or "?")


def describe_op(family: str, name: str) -> str:
    """An operation as the workflow's code wrote it: ``step 'charge'``, ``durable.sleep()``."""
    if family == "value" and name.startswith(PATCH_MARKER):
        return f"durable.patched({name.removeprefix(PATCH_MARKER)!r})"
    if family in ("sleep", "value"):
        return f"durable.{name}()"
    if family == "hook":
        return "durable.create_hook()"
    if family == "child":
        return f"child workflow {name!r}"
    return f"{family} {name!r}"


def _op_sort_key(op_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in op_id.split(".") if part)


StepTokens = tuple[
    contextvars.Token[Frame | None],
    contextvars.Token[Any],
    contextvars.Token[Any],
    contextvars.Token[Any],
]


def enter_step(info: StepInfo, ctx: RunContext) -> StepTokens:
    """Hide the workflow frame while step code runs; expose its StepInfo, clock and run."""
    return (
        current_frame.set(None),
        current_step.set(info),
        step_clock.set(ctx.clock),
        step_recorder.set(ctx.recorder),
    )


def exit_step(tokens: StepTokens) -> None:
    """Undo :func:`enter_step`."""
    step_recorder.reset(tokens[3])
    step_clock.reset(tokens[2])
    current_step.reset(tokens[1])
    current_frame.reset(tokens[0])


step_recorder: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "durable_step_recorder", default=None
)
"""The recorder of the run whose step code runs: its streams are written with that lease."""
