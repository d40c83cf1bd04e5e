"""Child workflows: a workflow called (or started) inside another runs as its own linked run.

The child run is created first; then the parent records a ``child_started`` event (with the
child's deterministic id) together with an internal hook, ``child:<child id>``. When the child
finishes, its worker resumes that hook, which wakes the parent; the parent also looks at the
child itself every minute in case that notification was lost in a crash. The child's outcome
is read from its run record, which never changes once finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from durable._context import current_frame
from durable._deadlines import with_deadline
from durable._engine import RunContext
from durable._errors import ConfigurationError, HookNotFound, WorkflowCancelled
from durable._run import Run
from durable._serialization import dumps
from durable.world import (
    FINISHED_STATUSES,
    MAX_KEY_LENGTH,
    HookRecord,
    NewEvent,
    NewRun,
    RunRecord,
    World,
)

if TYPE_CHECKING:
    from durable._decorators import WorkflowDefinition
    from durable._runtime import Runtime

RECHECK_SECONDS = 60.0
"""How soon a parent first looks at an unfinished child in case its wake-up was lost."""
RECHECK_MAX_SECONDS = 3600.0
"""The longest a parent goes between such looks (it looks less often the longer it waits)."""


def recheck_delay(waited: float, time_skipping: bool) -> float:
    """Seconds until a parent looks again at a child it has waited on for ``waited`` seconds.

    Doubling the wait keeps a parent of a week-long child from waking every minute, and a test
    clock skipping to each look from replaying the parent ten thousand times; past an hour (not
    under time skipping, where no wake-up is lost) a lost wake-up still costs at most an hour.
    """
    delay = max(RECHECK_SECONDS, waited)
    return delay if time_skipping else min(delay, RECHECK_MAX_SECONDS)


CHILD_TOKEN_PREFIX = "child:"
"""Tokens of the internal hooks parents wait on for their children."""


def child_token(child_id: str) -> str:
    """The internal hook token a parent waits on for one child."""
    return f"{CHILD_TOKEN_PREFIX}{child_id}"


CHILD_ID_LIMIT = MAX_KEY_LENGTH - len(CHILD_TOKEN_PREFIX)
"""Longest derived child id: the id, and the token its parent waits on, fit every world's keys."""

_KEPT_PREFIX = 100
"""How much of a long parent id a derived child id keeps readable (the top-level run's id)."""


def derived_child_id(parent_id: str, op_id: str) -> str:
    """The id of a child run started without an explicit one: ``<parent id>.<op id>``.

    Deep recursion would grow that past what worlds keep in keys, so past ``CHILD_ID_LIMIT`` the
    id is the parent id's start, then a hash of the whole (deterministic: a replay, or a retry
    after a crash, finds the same child), then the op id when it still fits.
    """
    plain = f"{parent_id}.{op_id}"
    if len(plain) <= CHILD_ID_LIMIT:
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:32]
    hashed = f"{parent_id[:_KEPT_PREFIX]}~{digest}"
    with_op = f"{hashed}.{op_id}"
    return with_op if len(with_op) <= CHILD_ID_LIMIT else hashed


def start_child(
    runtime: Runtime,
    defn: WorkflowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    run_id: str | None,
    timeout: float | None = None,
) -> ChildRun:
    """Start a child run from inside a workflow (idempotent across replays)."""
    frame = current_frame.get()
    if frame is None:
        raise ConfigurationError("start_child() needs a workflow")
    ctx = frame.ctx
    op_id = frame.branch.next_op()
    event = ctx.lookup(op_id, "child", defn.name)
    data = dumps(
        with_deadline({"args": list(args), "kwargs": kwargs}, timeout, runtime.world),
        serializer=defn.serializer,
        what=f"input of workflow {defn.name!r}",
    )
    if event is not None:
        child_id = json.loads(event.data or b"{}")["run_id"]
        return ChildRun(child_id, runtime, ctx, op_id)
    if ctx.pure:
        raise ctx.block()
    ctx.check_cancel()
    ctx.record(replay_point=False)  # values its input may hold (uuid4(), now()) first
    child_id = run_id or derived_child_id(ctx.run_id, op_id)
    # The child run exists before the parent's log names it, so every child a log names can be
    # read; a crash in between leaves a child the replay adopts (its id is deterministic).
    _create(runtime, ctx, defn, child_id, data)
    info = json.dumps({"run_id": child_id, "workflow": defn.name}).encode()
    hook = HookRecord(child_token(child_id), ctx.run_id, op_id, ctx.clock())
    recorder = ctx.recorder
    if recorder is None:
        raise ctx.block()
    ctx.write_directly(
        lambda: recorder.create_hook(hook, NewEvent("child_started", op_id, defn.name, info))
    )
    return ChildRun(child_id, runtime, ctx, op_id)


def _create(
    runtime: Runtime, ctx: RunContext, defn: WorkflowDefinition, child_id: str, data: bytes
) -> None:
    record, created = runtime.world.create_run(
        NewRun(child_id, defn.name, data, parent_id=ctx.run_id),
        owner=None,
        lease_ttl=runtime.options.lease_ttl,
    )
    if not created and (record.parent_id != ctx.run_id or record.workflow_name != defn.name):
        # Waiting on another run's outcome as if it were this child's would never end (its
        # notice goes to its own parent, if any) or hand back someone else's result.
        owner = f"a child of {record.parent_id}" if record.parent_id else "not a child run"
        raise ConfigurationError(
            f"child workflow {defn.name!r} of run {ctx.run_id} needs the run id {child_id!r}, "
            f"which a run of workflow {record.workflow_name!r} ({owner}) already has: give "
            "the child another id with .with_options(run_id=...), or start top-level runs "
            f"with ids that do not look like child ids ({ctx.run_id}.<n>)"
        )
    runtime.wake()


_WAITING = object()
"""What :meth:`ChildRun._look` returns while the child is unfinished."""


class _Outcome:
    """A finished child's record; :meth:`value` returns its result or raises its failure."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def value(self) -> Any:
        from durable._run import outcome_of

        return outcome_of(self.record)


class ChildRun(Run[Any]):
    """A child run seen from its parent: ``result()`` (or ``await``) waits durably.

    Waiting suspends the parent rather than holding a thread.
    ``cancel()`` cancels the child (the parent's wait then raises ``WorkflowCancelled``);
    ``status`` and ``events()`` read the child as it is now, which a replay may see differently:
    branch on the result, not on them.
    """

    def __init__(self, run_id: str, runtime: Runtime, ctx: RunContext, op_id: str) -> None:
        super().__init__(run_id, runtime)
        self._ctx = ctx
        self._op_id = op_id
        self._unfinished: RunRecord | None = None

    def __repr__(self) -> str:
        return f"<ChildRun {self.id}>"

    async def wait(self, timeout: float | None = None) -> Any:
        """Await the child's result durably (as :meth:`result`).

        Beside sibling steps still running it waits with them and goes on as soon as the child
        has finished, as :meth:`result` does in a sync workflow.
        """
        ctx = self._ctx
        ctx.stopped_here()
        since = time.monotonic()
        while True:
            seen = ctx.seen_now()
            looked = self._look()
            if looked is not _WAITING:
                return looked.value()
            if await ctx.linger_async(None, since):
                continue
            raise self._suspend(seen)

    def result(self, timeout: float | None = None) -> Any:
        """The child's result, waited for durably; its failure is raised here.

        Raises:
            WorkflowFailed: the child failed.
            WorkflowCancelled: the child was cancelled.
        """
        ctx = self._ctx
        ctx.stopped_here()
        since = time.monotonic()
        while True:
            seen = ctx.seen_now()
            looked = self._look()
            if looked is not _WAITING:
                return looked.value()
            if ctx.linger(None, since):  # other branches still work: wait beside them
                continue
            raise self._suspend(seen)

    def _look(self) -> Any:
        """The child's outcome, or ``_WAITING`` while it is unfinished.

        Raises:
            WorkflowCancelled: the child run is gone.
        """
        ctx = self._ctx
        while True:
            if ctx.hook_payloads.get(self._op_id) or ctx.refresh():
                record = self._runtime.world.get_run(self.id)
                if record is None:
                    raise WorkflowCancelled(self.id)
                if record.status in FINISHED_STATUSES:
                    return _Outcome(record)
            ctx.check_cancel()
            if ctx.pure:
                raise ctx.suspend_until(None, f"waiting for child run {self.id}")
            record = self._runtime.world.get_run(self.id)
            if record is not None and record.status in FINISHED_STATUSES:
                notify_parent(self._runtime.world, record)  # the child's own notice was lost
                continue
            self._unfinished = record
            return _WAITING

    def _suspend(self, seen: int) -> BaseException:
        ctx = self._ctx
        record = self._unfinished
        waited = ctx.clock() - record.created_at if record is not None else 0.0
        skipping = self._runtime.options.time_skipping is not None
        recheck = ctx.clock() + recheck_delay(waited, skipping)
        return ctx.suspend_for_outside(seen, recheck, f"waiting for {self.id}")

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wait().__await__()


def notify_parent(world: World, record: RunRecord) -> None:
    """Wake the parent of a finished run (its hook may already be gone: then nothing to do)."""
    if record.parent_id is None:
        return
    payload = json.dumps({"status": record.status}).encode()
    try:
        world.resume_hook(child_token(record.id), payload)
    except HookNotFound:
        pass


def child_ids(events: list[Any]) -> list[str]:
    """The ids of the children a run started, from its log."""
    return [json.loads(e.data or b"{}")["run_id"] for e in events if e.kind == "child_started"]
