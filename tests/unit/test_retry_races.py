"""A retried run is taken up by no execution before its ``run_retried`` event is recorded: one
that replayed the log without it would meet the recorded failure and fail the run again.

The world holds the retry just after reopening the run, while this process's worker polls it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest

import durable
from durable import RetryPolicy, WorkflowFailed
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.testing import Clock
from durable.world import NewEvent, RunRecord, RunUpdate
from worlds.memory import MemoryWorld

HELD_POLLS = 25
"""Polls of the worker a retry is held for: an execution it started meanwhile has long read the
log (the worker polls every 10 ms; it takes the run up within a poll or two)."""

calls: Counter[str] = Counter()
outage = {"payments": True}
step_started = threading.Event()
finish_step = threading.Event()
hold_step = {"on": False}


class HoldingWorld(MemoryWorld):
    """A memory world that, when told to, holds ``reopen`` once it has leased the run again,
    until the worker has polled ``HELD_POLLS`` times more; and the next read of the thread that
    failed a run until then."""

    def __init__(self, clock: Clock) -> None:
        super().__init__("memory://retry-races", clock=clock)
        self.hold_reopen = False
        self.reopened = threading.Event()
        self._polls = 0
        self._polled = threading.Condition()
        self.claimed: list[str] = []
        self.hold_read_after_failure = False
        self._held_reader: int | None = None
        self.reading = threading.Event()

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        cancel = super().append(run_id, owner, events, update)
        if self.hold_read_after_failure and update is not None and update.status == "failed":
            self.hold_read_after_failure = False
            self._held_reader = threading.get_ident()
        return cancel

    def get_run(self, run_id: str) -> RunRecord | None:
        if self._held_reader == threading.get_ident():
            # The thread that failed the run reads it next once its execution is over here.
            self._held_reader = None
            self.reading.set()
            assert self.reopened.wait(10)
        return super().get_run(run_id)

    def reopen(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        record = super().reopen(run_id, owner, lease_ttl)
        if self.hold_reopen:
            self.hold_reopen = False
            self.reopened.set()
            with self._polled:
                until = self._polls + HELD_POLLS
                assert self._polled.wait_for(lambda: self._polls >= until, timeout=10)
        return record

    def claim_due(
        self,
        owner: str,
        lease_ttl: float,
        limit: int,
        workflow_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        claimed = super().claim_due(owner, lease_ttl, limit, workflow_names)
        with self._polled:
            self._polls += 1
            self.claimed.extend(r.id for r in claimed)
            self._polled.notify_all()
        return claimed


@durable.step(name="retry_races.charge", retry=RetryPolicy(max_attempts=1))
def charge(order: str) -> str:
    calls["charge"] += 1
    if hold_step["on"]:
        hold_step["on"] = False
        step_started.set()
        assert finish_step.wait(10)
    if outage["payments"]:
        raise ConnectionError("payments api down")
    return f"charged {order}"


@durable.workflow(name="retry_races.gives_up")
def gives_up(order: str) -> str:
    try:
        return charge(order)
    except ConnectionError:
        raise ValueError("gave up on payments") from None


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    outage["payments"] = True
    hold_step["on"] = False
    step_started.clear()
    finish_step.clear()


@contextlib.contextmanager
def _running(
    world: HoldingWorld, lease_ttl: float, time_skipping: Callable[[float], None] | None = None
) -> Iterator[Runtime]:
    options = RuntimeOptions(poll_interval=0.01, lease_ttl=lease_ttl, time_skipping=time_skipping)
    runtime = Runtime(world, options)
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()


def test_a_retried_run_is_not_taken_up_through_a_lease_time_skipping_made_look_lapsed():
    # A thread waits for the run while another retries it: the worker, seeing nothing executing
    # here and someone waiting, skips the test clock to the next due time, the reopened lease's
    # end; claimed then, the run replayed the failure before its run_retried was recorded.
    clock = Clock()
    world = HoldingWorld(clock)
    with _running(world, lease_ttl=5.0, time_skipping=clock.advance_to):
        run = gives_up.start("o-1")
        with pytest.raises(WorkflowFailed, match="gave up"):
            run.result(timeout=10)
        outage["payments"] = False
        world.hold_reopen = True
        errors: list[BaseException] = []
        retrier = threading.Thread(target=_catching(run.retry, errors))
        retrier.start()
        assert world.reopened.wait(10)
        try:
            assert run.result(timeout=10) == "charged o-1"
        finally:
            retrier.join(10)
        assert not errors
        assert calls == {"charge": 2}
        kinds = [e.kind for e in run.events()]
        assert kinds.count("run_failed") == 1 and kinds[-1] == "run_completed"


def test_a_retried_run_is_not_taken_up_by_a_claim_made_while_its_failure_executed():
    # The worker claimed the run while its failing execution still ran (its lease lapsed during
    # a long step): once that execution is over here, the runtime reads the run and executes it
    # again if it is leased to this process, as the retry's reopening made it.
    clock = Clock()
    world = HoldingWorld(clock)
    with _running(world, lease_ttl=60.0):
        hold_step["on"] = True
        run = gives_up.start("o-2")
        assert step_started.wait(10)
        clock.advance(61)  # the lease lapses while the step runs; the worker claims it
        _wait_for(lambda: bool(world.claimed))
        world.hold_read_after_failure = True
        finish_step.set()
        with pytest.raises(WorkflowFailed, match="gave up"):
            run.result(timeout=10)
        assert world.reading.wait(10)
        outage["payments"] = False
        world.hold_reopen = True
        run.retry()
        assert run.result(timeout=10) == "charged o-2"
        assert calls == {"charge": 2}
        kinds = [e.kind for e in run.events()]
        assert kinds.count("run_failed") == 1 and kinds[-1] == "run_completed"


def _catching(call: Callable[[], object], errors: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    return run


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
