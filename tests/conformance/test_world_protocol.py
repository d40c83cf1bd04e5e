"""The World contract (``durable/world.py``), checked through the protocol only on every world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from durable._errors import CancelRequested, LeaseLost, WorldError
from durable.world import (
    FINISHED_STATUSES,
    NewEvent,
    NewRun,
    RunRecord,
    RunUpdate,
    World,
)
from tests.conformance.load import volume
from tests.exited import exited_owner

START = 1_700_000_000.0
"""Where the ``clock`` fixture (``conftest.FakeClock``) starts."""
TTL = 30.0
A = "worker-a"
B = "worker-b"
ROOT = Path(__file__).resolve().parents[2]


class FakeClock(Protocol):
    def __call__(self) -> float: ...
    def advance(self, seconds: float) -> float: ...


def create(
    world: World,
    run_id: str = "run-1",
    *,
    owner: str | None = None,
    workflow: str = "wf",
    input: bytes = b"input",
    parent_id: str | None = None,
) -> RunRecord:
    record, created = world.create_run(
        NewRun(run_id, workflow, input, parent_id), owner=owner, lease_ttl=TTL
    )
    assert created
    return record


def step(n: int = 1) -> NewEvent:
    return NewEvent("step_completed", str(n), f"step{n}", f"result{n}".encode())


def suspend(world: World, run_id: str, owner: str, wake_at: float | None) -> None:
    world.append(
        run_id,
        owner,
        [NewEvent("sleep_started", "1", "sleep")],
        RunUpdate("suspended", wake_at=wake_at, release=True),
    )


def finish(world: World, run_id: str, owner: str, status: str = "completed") -> None:
    kind = {"completed": "run_completed", "failed": "run_failed", "cancelled": "run_cancelled"}
    world.append(
        run_id,
        owner,
        [NewEvent(kind[status])],
        RunUpdate(status, output=b"out" if status == "completed" else None, release=True),  # type: ignore[arg-type]
    )


def dead_owner() -> str:
    """An owner id naming a process on this host that has exited."""
    return exited_owner()


# -- basics -------------------------------------------------------------------------------------


def test_world_satisfies_the_protocol(world: World) -> None:
    assert isinstance(world, World)
    assert isinstance(world.url, str) and "://" in world.url


def test_now_follows_the_clock(world: World, clock: FakeClock) -> None:
    assert world.now() == START
    clock.advance(12.5)
    assert world.now() == START + 12.5


def test_empty_world(world: World) -> None:
    assert world.get_run("nope") is None
    assert world.read_events("nope") == []
    assert world.list_runs() == []
    assert world.count_runs() == {}
    assert world.next_due_at() is None
    assert world.claim_due(A, TTL, 10) == []
    assert world.acquire("nope", A, TTL) is None
    assert world.request_cancel("nope") is None
    assert world.renew_leases(A, TTL) == 0
    assert world.delete_runs(START + 1e9) == 0
    world.release("nope", A)


# -- create_run ---------------------------------------------------------------------------------


def test_create_pending_run(world: World) -> None:
    record = create(world, input=b"\x00args\xff", parent_id="parent-7")
    assert record == RunRecord(
        id="run-1",
        workflow_name="wf",
        status="pending",
        input=b"\x00args\xff",
        output=None,
        error=None,
        created_at=START,
        updated_at=START,
        wake_at=START,
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
        parent_id="parent-7",
        last_seq=1,
    )
    assert world.get_run("run-1") == record


def test_create_owned_run(world: World) -> None:
    record = create(world, owner=A)
    assert record.status == "running"
    assert record.lease_owner == A
    assert record.lease_expires_at == START + TTL
    assert record.wake_at is None
    assert record.last_seq == 1
    assert world.get_run("run-1") == record


def test_create_run_records_run_created(world: World) -> None:
    create(world, workflow="orders.checkout")
    [event] = world.read_events("run-1")
    assert event.run_id == "run-1"
    assert event.seq == 1
    assert event.kind == "run_created"
    assert event.op_id is None
    assert event.name == "orders.checkout"
    assert event.data is None
    assert event.created_at == START


def test_create_run_is_idempotent(world: World, clock: FakeClock) -> None:
    first = create(world, owner=A)
    clock.advance(5)
    again, created = world.create_run(
        NewRun("run-1", "other", b"other input", "p"), owner=B, lease_ttl=99
    )
    assert created is False
    assert again == first
    again, created = world.create_run(NewRun("run-1", "wf", b"input"), owner=None, lease_ttl=TTL)
    assert created is False
    assert again == first
    assert [e.kind for e in world.read_events("run-1")] == ["run_created"]
    assert world.count_runs() == {"running": 1}


def test_create_run_returns_the_current_record_of_an_existing_run(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [step()])
    record, created = world.create_run(NewRun("run-1", "wf", b"input"), owner=None, lease_ttl=1)
    assert not created
    assert record.last_seq == 2
    assert record == world.get_run("run-1")


def test_create_run_concurrently_creates_once(world: World) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        _, created = world.create_run(NewRun("same", "wf", b"x"), owner=None, lease_ttl=TTL)
        results.append(created)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert len(world.read_events("same")) == 1


def test_unicode_and_long_values_round_trip(world: World) -> None:
    big = os.urandom(300_000)
    create(world, "run-ü-✓", workflow="wf/ñ", input=big, owner=A)
    world.append("run-ü-✓", A, [NewEvent("value_recorded", "1.2.3", "名前", b"")])
    record = world.get_run("run-ü-✓")
    assert record is not None and record.input == big and record.workflow_name == "wf/ñ"
    event = world.read_events("run-ü-✓")[1]
    assert (event.op_id, event.name, event.data) == ("1.2.3", "名前", b"")


# -- append -------------------------------------------------------------------------------------


def test_append_assigns_consecutive_seqs(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(1)
    assert world.append("run-1", A, [step(1)]) is False
    clock.advance(1)
    assert world.append("run-1", A, [step(2), step(3), step(4)]) is False
    clock.advance(1)
    world.append("run-1", A, [NewEvent("value_recorded")])
    events = world.read_events("run-1")
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.kind for e in events] == ["run_created"] + ["step_completed"] * 4 + ["value_recorded"]
    assert [e.created_at for e in events] == [START, START + 1] + [START + 2] * 3 + [START + 3]
    assert events[2].op_id == "2" and events[2].name == "step2" and events[2].data == b"result2"
    assert events[5].op_id is None and events[5].name is None and events[5].data is None
    assert all(e.run_id == "run-1" for e in events)
    record = world.get_run("run-1")
    assert record is not None
    assert record.last_seq == 6
    assert record.updated_at == START + 3
    assert record.status == "running" and record.lease_owner == A


def test_append_nothing_only_touches_the_record(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(3)
    assert world.append("run-1", A, []) is False
    record = world.get_run("run-1")
    assert record is not None
    assert record.last_seq == 1
    assert record.updated_at == START + 3
    assert len(world.read_events("run-1")) == 1


def test_append_keeps_logs_of_runs_apart(world: World) -> None:
    create(world, "r1", owner=A)
    create(world, "r2", owner=A)
    world.append("r1", A, [step(1), step(2)])
    world.append("r2", A, [step(9)])
    world.append("r1", A, [step(3)])
    assert [e.seq for e in world.read_events("r1")] == [1, 2, 3, 4]
    assert [(e.seq, e.name) for e in world.read_events("r2")] == [(1, "wf"), (2, "step9")]


def test_append_returns_the_cancel_flag(world: World) -> None:
    create(world, owner=A)
    assert world.append("run-1", A, [step(1)]) is False
    world.request_cancel("run-1")
    assert world.append("run-1", A, [step(2)]) is True
    assert world.append("run-1", A, []) is True
    assert world.append("run-1", A, [step(3), step(4)]) is True
    assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3, 4, 5]
    with pytest.raises(LeaseLost):
        world.append("run-1", B, [step(5)])


@pytest.mark.parametrize(
    ("status", "carried"), [("completed", 1), ("failed", 1), ("completed", 150)]
)
def test_a_cancel_request_supersedes_an_outcome(world: World, status: str, carried: int) -> None:
    # Cancellation is final once requested: the run cannot end otherwise, and the refused
    # write records nothing, however many events it carries (the engine then records the
    # cancellation).
    create(world, owner=A)
    world.append("run-1", A, [step(1)])
    world.request_cancel("run-1")
    kind = "run_completed" if status == "completed" else "run_failed"
    with pytest.raises(CancelRequested):
        world.append(
            "run-1",
            A,
            [*(step(2 + i) for i in range(carried)), NewEvent(kind)],
            RunUpdate(status, output=b"out", error=b"err", release=True),  # type: ignore[arg-type]
        )
    record = world.get_run("run-1")
    assert record is not None and record.status == "running" and record.lease_owner == A
    assert [e.kind for e in world.read_events("run-1")] == ["run_created", "step_completed"]
    assert world.append("run-1", A, [step(2)]) is True
    world.append("run-1", A, [NewEvent("run_cancelled")], RunUpdate("cancelled", release=True))
    record = world.get_run("run-1")
    assert record is not None and record.status == "cancelled" and record.output is None


def test_append_with_update_suspends_and_releases(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(2)
    suspend(world, "run-1", A, START + 100)
    record = world.get_run("run-1")
    assert record is not None
    assert record.status == "suspended"
    assert record.wake_at == START + 100
    assert record.lease_owner is None and record.lease_expires_at is None
    assert record.last_seq == 2
    assert record.updated_at == START + 2
    assert [e.kind for e in world.read_events("run-1")] == ["run_created", "sleep_started"]


def test_append_with_update_completes(world: World) -> None:
    create(world, owner=A)
    world.append(
        "run-1",
        A,
        [step(1), NewEvent("run_completed", data=b"42")],
        RunUpdate("completed", output=b"42", release=True),
    )
    record = world.get_run("run-1")
    assert record is not None
    assert (record.status, record.output, record.error) == ("completed", b"42", None)
    assert record.lease_owner is None and record.last_seq == 3


def test_append_with_update_fails(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [NewEvent("run_failed")], RunUpdate("failed", error=b"boom"))
    record = world.get_run("run-1")
    assert record is not None
    assert (record.status, record.output, record.error) == ("failed", None, b"boom")
    # Without release=True the lease stays.
    assert record.lease_owner == A and record.lease_expires_at == START + TTL


def test_append_update_keeps_output_and_error_it_does_not_set(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [], RunUpdate("running", output=b"", error=b"e"))
    world.append("run-1", A, [], RunUpdate("completed"))
    record = world.get_run("run-1")
    assert record is not None
    assert (record.status, record.output, record.error) == ("completed", b"", b"e")


def test_append_update_sets_wake_at(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [], RunUpdate("suspended", wake_at=START + 5))
    record = world.get_run("run-1")
    assert record is not None and record.wake_at == START + 5 and record.lease_owner == A
    world.append("run-1", A, [], RunUpdate("running"))
    record = world.get_run("run-1")
    assert record is not None and record.wake_at is None and record.status == "running"


def test_append_by_another_owner_raises_lease_lost(world: World) -> None:
    create(world, owner=A)
    before = world.get_run("run-1")
    with pytest.raises(LeaseLost) as info:
        world.append("run-1", B, [step()], RunUpdate("completed", output=b"x", release=True))
    assert info.value.run_id == "run-1"
    assert isinstance(info.value, WorldError)
    assert world.get_run("run-1") == before
    assert len(world.read_events("run-1")) == 1


def test_append_to_an_unleased_run_raises_lease_lost(world: World) -> None:
    create(world)
    with pytest.raises(LeaseLost):
        world.append("run-1", A, [step()])
    assert len(world.read_events("run-1")) == 1


def test_append_to_an_unknown_run_raises_lease_lost(world: World) -> None:
    with pytest.raises(LeaseLost):
        world.append("ghost", A, [step()])
    assert world.read_events("ghost") == []


def test_append_after_releasing_update_raises_lease_lost(world: World) -> None:
    create(world, owner=A)
    suspend(world, "run-1", A, START + 10)
    with pytest.raises(LeaseLost):
        world.append("run-1", A, [step()])


def test_append_after_release_raises_lease_lost(world: World) -> None:
    create(world, owner=A)
    world.release("run-1", A)
    with pytest.raises(LeaseLost):
        world.append("run-1", A, [step()])


def test_append_after_takeover_raises_lease_lost(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(TTL + 1)
    assert world.acquire("run-1", B, TTL) is not None
    with pytest.raises(LeaseLost):
        world.append("run-1", A, [step(1)])
    assert world.append("run-1", B, [step(1)]) is False
    assert [e.seq for e in world.read_events("run-1")] == [1, 2]


def test_lease_lost_is_picklable_for_other_processes(world: World) -> None:
    import pickle

    create(world, owner=A)
    with pytest.raises(LeaseLost) as info:
        world.append("run-1", B, [])
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, LeaseLost) and copy.run_id == "run-1"


def test_concurrent_appends_from_threads(world: World) -> None:
    runs = [f"r{i}" for i in range(4)]
    for run_id in runs:
        create(world, run_id, owner=A)

    rounds = volume(world, 50)

    def work(run_id: str) -> None:
        for n in range(rounds):
            world.append(run_id, A, [step(n)])

    threads = [threading.Thread(target=work, args=(r,)) for r in runs for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run_id in runs:
        events = world.read_events(run_id)
        assert [e.seq for e in events] == list(range(1, 2 + 2 * rounds))
        record = world.get_run(run_id)
        assert record is not None and record.last_seq == 1 + 2 * rounds


# -- read_events --------------------------------------------------------------------------------


def test_read_events_after_seq(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [step(1), step(2), step(3)])
    assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3, 4]
    assert [e.seq for e in world.read_events("run-1", after_seq=0)] == [1, 2, 3, 4]
    assert [e.seq for e in world.read_events("run-1", after_seq=2)] == [3, 4]
    assert world.read_events("run-1", after_seq=4) == []
    assert world.read_events("run-1", after_seq=99) == []
    assert world.read_events("run-1", 3)[0].name == "step3"


# -- acquire ------------------------------------------------------------------------------------


def test_acquire_pending_run(world: World, clock: FakeClock) -> None:
    create(world)
    clock.advance(1)
    record = world.acquire("run-1", A, TTL)
    assert record is not None
    assert record.status == "running"
    assert record.lease_owner == A
    assert record.lease_expires_at == START + 1 + TTL
    assert record.updated_at == START + 1
    assert record.last_seq == 1
    assert world.get_run("run-1") == record
    assert world.acquire("run-1", B, TTL) is None
    assert world.acquire("run-1", A, TTL) is None


def test_acquire_suspended_run_only_when_due(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    suspend(world, "run-1", A, START + 60)
    assert world.acquire("run-1", B, TTL) is None
    clock.advance(59.5)
    assert world.acquire("run-1", B, TTL) is None
    clock.advance(0.5)
    record = world.acquire("run-1", B, TTL)
    assert record is not None
    assert record.status == "running" and record.lease_owner == B
    assert record.last_seq == 2


def test_acquire_never_takes_a_run_waiting_without_wake_time(
    world: World, clock: FakeClock
) -> None:
    create(world, owner=A)
    suspend(world, "run-1", A, None)
    clock.advance(365 * 86400)
    assert world.acquire("run-1", B, TTL) is None
    assert world.claim_due(B, TTL, 10) == []


def test_acquire_running_run_only_when_its_lease_lapsed(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(TTL - 1)
    assert world.acquire("run-1", B, TTL) is None
    clock.advance(1)  # expires exactly now
    record = world.acquire("run-1", B, TTL)
    assert record is not None and record.lease_owner == B
    assert record.lease_expires_at == START + 2 * TTL


def test_acquire_run_of_dead_owner_at_once(world: World) -> None:
    owner = dead_owner()
    create(world, owner=owner)
    record = world.acquire("run-1", B, TTL)
    assert record is not None and record.lease_owner == B


@pytest.mark.parametrize("status", sorted(FINISHED_STATUSES))
def test_acquire_never_takes_finished_runs(world: World, clock: FakeClock, status: str) -> None:
    create(world, owner=A)
    finish(world, "run-1", A, status)
    clock.advance(10 * TTL)
    assert world.acquire("run-1", B, TTL) is None
    assert world.claim_due(B, TTL, 10) == []
    record = world.get_run("run-1")
    assert record is not None and record.status == status


def test_acquire_unknown_run(world: World) -> None:
    assert world.acquire("ghost", A, TTL) is None


# -- claim_due ----------------------------------------------------------------------------------


def test_claim_due_respects_limit_and_creation_order(world: World, clock: FakeClock) -> None:
    for i in range(5):
        create(world, f"r{i}")
        clock.advance(1)
    first = world.claim_due(A, TTL, 2)
    assert [r.id for r in first] == ["r0", "r1"]
    assert all(r.status == "running" and r.lease_owner == A for r in first)
    assert all(r.lease_expires_at == clock() + TTL for r in first)
    assert first[0] == world.get_run("r0")
    assert [r.id for r in world.claim_due(B, TTL, 2)] == ["r2", "r3"]
    assert [r.id for r in world.claim_due(B, TTL, 10)] == ["r4"]
    assert world.claim_due(B, TTL, 10) == []


def test_claim_due_orders_by_due_time(world: World, clock: FakeClock) -> None:
    create(world, "sleeper", owner=A)  # created first, due last
    suspend(world, "sleeper", A, START + 50)
    clock.advance(10)
    create(world, "late-pending")  # due at START + 10
    create(world, "early-sleeper", owner=A)
    suspend(world, "early-sleeper", A, START + 5)
    create(world, "not-due", owner=A)
    suspend(world, "not-due", A, START + 1000)
    clock.advance(100)
    claimed = world.claim_due(B, TTL, 10)
    assert [r.id for r in claimed] == ["early-sleeper", "late-pending", "sleeper"]


def test_claim_due_breaks_ties_by_creation(world: World) -> None:
    for name in ["c", "a", "b"]:
        create(world, name)
    assert [r.id for r in world.claim_due(A, TTL, 10)] == ["c", "a", "b"]


def test_claim_due_takes_lapsed_leases_but_not_live_ones(world: World, clock: FakeClock) -> None:
    create(world, "live", owner=A)
    clock.advance(TTL + 1)
    world.renew_leases(A, TTL)
    create(world, "lapsed", owner=B)
    clock.advance(TTL)
    assert world.renew_leases(A, TTL) == 1
    claimed = world.claim_due("worker-c", TTL, 10)
    assert [r.id for r in claimed] == ["lapsed"]
    assert claimed[0].lease_owner == "worker-c"


def test_claim_due_orders_lapsed_runs_by_last_activity(world: World, clock: FakeClock) -> None:
    create(world, "busy", owner=A)
    clock.advance(1)
    create(world, "idle", owner=A)
    clock.advance(4)
    world.append("busy", A, [step()])  # busy's last change is now later than idle's
    clock.advance(TTL + 1)
    assert [r.id for r in world.claim_due(B, TTL, 10)] == ["idle", "busy"]


def test_claim_due_takes_runs_of_dead_owners(world: World) -> None:
    create(world, "orphan", owner=dead_owner())
    create(world, "alive", owner=A)
    assert [r.id for r in world.claim_due(B, TTL, 10)] == ["orphan"]


def test_claim_due_filters_by_workflow_name(world: World) -> None:
    create(world, "a1", workflow="a")
    create(world, "b1", workflow="b")
    create(world, "c1", workflow="c")
    create(world, "a2", workflow="a")
    assert world.claim_due(A, TTL, 10, workflow_names=[]) == []
    assert [r.id for r in world.claim_due(A, TTL, 10, workflow_names=["a"])] == ["a1", "a2"]
    assert [r.id for r in world.claim_due(A, TTL, 10, workflow_names=("c", "zzz"))] == ["c1"]
    assert [r.id for r in world.claim_due(A, TTL, 10, workflow_names=None)] == ["b1"]


def test_claim_due_with_zero_limit(world: World) -> None:
    create(world)
    assert world.claim_due(A, TTL, 0) == []
    record = world.get_run("run-1")
    assert record is not None and record.status == "pending"


def test_claim_due_takes_released_runs(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(1)
    world.release("run-1", A)
    [record] = world.claim_due(B, TTL, 10)
    assert record.id == "run-1" and record.lease_owner == B


def test_claim_due_from_threads_never_double_leases(world: World) -> None:
    n = volume(world, 100)
    for i in range(n):
        create(world, f"r{i:03d}")
    claimed: list[str] = []
    lock = threading.Lock()

    def work(owner: str) -> None:
        while True:
            got = world.claim_due(owner, TTL, 7)
            if not got:
                return
            with lock:
                claimed.extend(r.id for r in got)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [f"r{i:03d}" for i in range(n)]


# -- several handles and processes on one store ---------------------------------------------------


def test_handles_share_state(world: World, open_again: Callable[[], World]) -> None:
    other = open_again()
    create(world, owner=A)
    world.append("run-1", A, [step()])
    record = other.get_run("run-1")
    assert record is not None and record.last_seq == 2
    with pytest.raises(LeaseLost):
        other.append("run-1", B, [step(2)])
    other.append("run-1", A, [step(2)])
    assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3]


def test_handles_in_threads_never_double_lease(
    world: World, open_again: Callable[[], World]
) -> None:
    n = volume(world, 200)
    for i in range(n):
        create(world, f"r{i:03d}")
    handles = [open_again() for _ in range(4)]
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(handles))

    def work(handle: World, owner: str) -> None:
        barrier.wait()
        while True:
            got = handle.claim_due(owner, TTL, 5)
            if not got:
                return
            with lock:
                claimed.extend((r.id, owner) for r in got)

    threads = [threading.Thread(target=work, args=(h, f"w{i}")) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(run_id for run_id, _ in claimed)
    assert sorted(counts) == [f"r{i:03d}" for i in range(n)]
    assert set(counts.values()) == {1}
    for run_id, owner in claimed:
        record = world.get_run(run_id)
        assert record is not None and record.lease_owner == owner


def test_handles_appending_to_one_run_get_consecutive_seqs(
    world: World, open_again: Callable[[], World]
) -> None:
    create(world, owner=A)
    handles = [world, *(open_again() for _ in range(3))]
    barrier = threading.Barrier(len(handles))
    rounds = max(10, volume(world, 40) // 10 * 10)
    per_handle = rounds + rounds // 10  # every tenth round appends two events

    def work(handle: World, n: int) -> None:
        barrier.wait()
        for i in range(rounds):
            if i % 10 == 9:
                handle.append("run-1", A, [step(n), step(n)])
            else:
                handle.append("run-1", A, [step(n)])

    threads = [threading.Thread(target=work, args=(h, n)) for n, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = world.read_events("run-1")
    assert [e.seq for e in events] == list(range(1, 1 + 1 + 4 * per_handle))
    assert Counter(e.op_id for e in events[1:]) == {str(n): per_handle for n in range(4)}


_CLAIMER = """
import json, sys
from durable.world import open_world
world = open_world(sys.argv[1])
owner = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
claimed = []
while True:
    got = world.claim_due(owner, 300.0, 7)
    if not got:
        break
    claimed.extend(r.id for r in got)
world.close()
print(json.dumps(claimed), flush=True)
"""


def test_processes_never_double_lease(world: World, open_again: Callable[[], World]) -> None:
    n = volume(world, 200)
    for i in range(n):
        create(world, f"r{i:03d}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, world.url, f"proc-{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for i in range(3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # start them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    per_process = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    everything = [run_id for ids in per_process for run_id in ids]
    assert sorted(everything) == [f"r{i:03d}" for i in range(n)]
    for i, ids in enumerate(per_process):
        for run_id in ids:
            record = world.get_run(run_id)
            assert record is not None and record.lease_owner == f"proc-{i}"


def test_run_of_a_killed_process_is_recovered_at_once(
    world: World, open_again: Callable[[], World]
) -> None:
    create(world)
    script = (
        "import os, sys\n"
        "from durable.world import open_world, make_owner_id\n"
        "w = open_world(sys.argv[1])\n"
        "assert w.acquire('run-1', make_owner_id(), 3600.0) is not None\n"
        "os._exit(0)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, world.url],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    record = world.get_run("run-1")
    assert record is not None and record.status == "running" and record.lease_owner
    [claimed] = world.claim_due(A, TTL, 10)
    assert claimed.id == "run-1" and claimed.lease_owner == A


# -- next_due_at --------------------------------------------------------------------------------


def test_next_due_at(world: World, clock: FakeClock) -> None:
    assert world.next_due_at() is None
    create(world, "pending")
    assert world.next_due_at() is None  # pending runs are due now, not later
    create(world, "s1", owner=A, workflow="x")
    create(world, "s2", owner=A, workflow="y")
    create(world, "hook", owner=A, workflow="x")
    suspend(world, "s1", A, START + 500)
    suspend(world, "s2", A, START + 200)
    suspend(world, "hook", A, None)
    assert world.next_due_at() == START + 200
    assert world.next_due_at(["x"]) == START + 500
    assert world.next_due_at(["y", "x"]) == START + 200
    assert world.next_due_at(["nothing"]) is None
    assert world.next_due_at([]) is None
    clock.advance(10)
    create(world, "running", owner=B, workflow="z")  # its lease lapses at START + 10 + TTL
    assert world.next_due_at() == START + 10 + TTL
    assert world.next_due_at(["z"]) == START + 10 + TTL
    assert world.next_due_at(["x"]) == START + 500
    finish(world, "running", B)
    assert world.next_due_at() == START + 200


# -- renew_leases -------------------------------------------------------------------------------


def test_renew_leases(world: World, clock: FakeClock) -> None:
    create(world, "a1", owner=A)
    create(world, "a2", owner=A)
    create(world, "b1", owner=B)
    create(world, "free")
    clock.advance(20)
    assert world.renew_leases(A, 100) == 2
    for run_id in ("a1", "a2"):
        record = world.get_run(run_id)
        assert record is not None and record.lease_expires_at == START + 120
        assert record.lease_owner == A and record.status == "running"
    record = world.get_run("b1")
    assert record is not None and record.lease_expires_at == START + TTL
    assert world.renew_leases("nobody", 100) == 0
    clock.advance(TTL)
    assert [r.id for r in world.claim_due("worker-c", TTL, 10)] == ["b1", "free"]


def test_renewed_lease_is_not_taken(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    for _ in range(5):
        clock.advance(TTL - 1)
        assert world.renew_leases(A, TTL) == 1
        assert world.acquire("run-1", B, TTL) is None
    world.append("run-1", A, [step()])


# -- release ------------------------------------------------------------------------------------


def test_release_returns_run_to_pending(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    world.append("run-1", A, [step()])
    clock.advance(4)
    world.release("run-1", A)
    record = world.get_run("run-1")
    assert record is not None
    assert record.status == "pending"
    assert record.lease_owner is None and record.lease_expires_at is None
    assert record.updated_at == START + 4
    assert record.last_seq == 2
    taken = world.acquire("run-1", B, TTL)
    assert taken is not None and taken.lease_owner == B


def test_release_by_non_owner_changes_nothing(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    before = world.get_run("run-1")
    clock.advance(1)
    world.release("run-1", B)
    assert world.get_run("run-1") == before
    create(world, "free")
    before = world.get_run("free")
    world.release("free", A)
    assert world.get_run("free") == before


def test_release_keeps_a_suspended_status(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [], RunUpdate("suspended", wake_at=START + 50))
    world.release("run-1", A)
    record = world.get_run("run-1")
    assert record is not None
    assert record.status == "suspended" and record.wake_at == START + 50
    assert record.lease_owner is None


# -- request_cancel -----------------------------------------------------------------------------


def test_request_cancel_running_run(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    clock.advance(3)
    record = world.request_cancel("run-1")
    assert record is not None
    assert record.cancel_requested is True
    assert record.status == "running" and record.lease_owner == A
    assert record.updated_at == START + 3
    assert world.get_run("run-1") == record
    assert world.request_cancel("run-1") == record


def test_request_cancel_makes_a_suspended_run_due(world: World, clock: FakeClock) -> None:
    create(world, owner=A)
    suspend(world, "run-1", A, START + 86400)
    clock.advance(5)
    record = world.request_cancel("run-1")
    assert record is not None
    assert record.cancel_requested and record.status == "suspended"
    assert record.wake_at == START + 5
    [claimed] = world.claim_due(B, TTL, 10)
    assert claimed.id == "run-1" and claimed.cancel_requested
    assert world.append("run-1", B, [NewEvent("run_cancelled")]) is True


def test_a_run_suspended_after_a_cancel_request_is_due_at_once(
    world: World, clock: FakeClock
) -> None:
    # The cancel lands while the worker runs; its suspension must not put the run to sleep
    # beyond the cancel's reach.
    create(world, owner=A)
    world.request_cancel("run-1")
    clock.advance(2)
    suspend(world, "run-1", A, None)
    record = world.get_run("run-1")
    assert record is not None and record.status == "suspended"
    assert record.wake_at == START + 2
    [claimed] = world.claim_due(B, TTL, 10)
    assert claimed.id == "run-1" and claimed.cancel_requested


def test_request_cancel_makes_a_hook_waiter_due(world: World) -> None:
    create(world, owner=A)
    suspend(world, "run-1", A, None)
    world.request_cancel("run-1")
    assert world.acquire("run-1", B, TTL) is not None


def test_request_cancel_pending_run(world: World) -> None:
    create(world)
    record = world.request_cancel("run-1")
    assert record is not None and record.cancel_requested and record.status == "pending"
    [claimed] = world.claim_due(A, TTL, 1)
    assert claimed.cancel_requested


@pytest.mark.parametrize("status", sorted(FINISHED_STATUSES))
def test_request_cancel_leaves_finished_runs_alone(
    world: World, clock: FakeClock, status: str
) -> None:
    create(world, owner=A)
    finish(world, "run-1", A, status)
    before = world.get_run("run-1")
    clock.advance(5)
    assert world.request_cancel("run-1") == before
    assert world.get_run("run-1") == before


def test_request_cancel_unknown_run(world: World) -> None:
    assert world.request_cancel("ghost") is None


# -- delete_runs --------------------------------------------------------------------------------


def test_delete_runs_removes_old_finished_runs(world: World, clock: FakeClock) -> None:
    for status in sorted(FINISHED_STATUSES):
        create(world, f"old-{status}", owner=A)
        finish(world, f"old-{status}", A, status)
    create(world, "old-pending")
    create(world, "old-running", owner=A)
    create(world, "old-suspended", owner=A)
    suspend(world, "old-suspended", A, START + 10**6)
    clock.advance(100)
    create(world, "new-completed", owner=A)
    finish(world, "new-completed", A)
    assert world.delete_runs(START + 100) == 3
    for status in FINISHED_STATUSES:
        assert world.get_run(f"old-{status}") is None
        assert world.read_events(f"old-{status}") == []
    remaining = {r.id for r in world.list_runs()}
    assert remaining == {"old-pending", "old-running", "old-suspended", "new-completed"}
    assert len(world.read_events("new-completed")) == 2
    assert world.delete_runs(START + 100) == 0
    assert world.delete_runs(START + 101) == 1


def test_delete_runs_is_strictly_before(world: World) -> None:
    create(world, owner=A)
    finish(world, "run-1", A)
    assert world.delete_runs(START) == 0
    assert world.get_run("run-1") is not None


def test_deleted_run_id_can_be_used_again(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [step()])
    finish(world, "run-1", A)
    assert world.delete_runs(START + 1) == 1
    record = create(world, owner=B)
    assert record.last_seq == 1
    assert [e.kind for e in world.read_events("run-1")] == ["run_created"]


# -- list_runs and count_runs ---------------------------------------------------------------------


def test_list_runs_newest_first_with_filters(world: World, clock: FakeClock) -> None:
    create(world, "r1", workflow="a")
    clock.advance(1)
    create(world, "r2", workflow="b", owner=A)
    clock.advance(1)
    create(world, "r3", workflow="a", owner=A)
    clock.advance(1)
    create(world, "r4", workflow="b")
    finish(world, "r3", A)
    assert [r.id for r in world.list_runs()] == ["r4", "r3", "r2", "r1"]
    assert [r.id for r in world.list_runs(limit=2)] == ["r4", "r3"]
    assert world.list_runs(limit=0) == []
    assert [r.id for r in world.list_runs(status="pending")] == ["r4", "r1"]
    assert [r.id for r in world.list_runs(workflow_name="a")] == ["r3", "r1"]
    assert [r.id for r in world.list_runs(status="running", workflow_name="b")] == ["r2"]
    assert [r.id for r in world.list_runs(status="completed")] == ["r3"]
    assert world.list_runs(status="failed") == []
    assert world.list_runs(workflow_name="zzz") == []
    assert world.list_runs()[1] == world.get_run("r3")


def test_list_runs_breaks_ties_by_id_descending(world: World) -> None:
    for run_id in ["b", "c", "a"]:
        create(world, run_id)
    assert [r.id for r in world.list_runs()] == ["c", "b", "a"]


def test_list_runs_default_limit_is_100(world: World) -> None:
    for i in range(105):
        create(world, f"r{i:03d}")
    runs = world.list_runs()
    assert len(runs) == 100
    assert runs[0].id == "r104"


def test_count_runs(world: World) -> None:
    create(world, "p1")
    create(world, "p2")
    create(world, "r1", owner=A)
    create(world, "s1", owner=A)
    suspend(world, "s1", A, START + 5)
    create(world, "c1", owner=A)
    finish(world, "c1", A)
    create(world, "f1", owner=A)
    finish(world, "f1", A, "failed")
    assert world.count_runs() == {
        "pending": 2,
        "running": 1,
        "suspended": 1,
        "completed": 1,
        "failed": 1,
    }


def test_delete_runs_keeps_finished_children_of_unfinished_parents(world: World) -> None:
    # The parent's replay reads a child's outcome from the child's run.
    create(world, "parent", owner=A)
    create(world, "kid", owner=A, parent_id="parent")
    finish(world, "kid", A)
    create(world, "done-parent", owner=A)
    create(world, "done-kid", owner=A, parent_id="done-parent")
    finish(world, "done-kid", A)
    finish(world, "done-parent", A)
    create(world, "orphan", owner=A, parent_id="gone")
    finish(world, "orphan", A)
    assert world.delete_runs(START + 1) == 3
    assert world.get_run("kid") is not None
    assert {r.id for r in world.list_runs()} == {"parent", "kid"}
    finish(world, "parent", A)
    assert world.delete_runs(START + 1) == 2


def test_reopen_leases_a_failed_run_again_without_its_error(world: World) -> None:
    create(world, owner=A)
    world.append("run-1", A, [step(1)])
    world.append(
        "run-1", A, [NewEvent("run_failed")], RunUpdate("failed", error=b"err", release=True)
    )
    assert world.reopen("no-such-run", B, 30.0) is None
    reopened = world.reopen("run-1", B, 30.0)
    assert reopened is not None and reopened.status == "running" and reopened.lease_owner == B
    record = world.get_run("run-1")
    assert record is not None and record.error is None and record.lease_owner == B
    assert world.reopen("run-1", A, 30.0) is None  # not failed any more
    world.append("run-1", B, [NewEvent("run_retried"), step(2)])
    assert [e.kind for e in world.read_events("run-1")] == [
        "run_created", "step_completed", "run_failed", "run_retried", "step_completed"
    ]
    world.append(
        "run-1", B, [NewEvent("run_failed")], RunUpdate("failed", error=b"again", release=True)
    )
    record = world.get_run("run-1")
    assert record is not None and record.status == "failed" and record.error == b"again"


def test_reopen_leaves_runs_that_did_not_fail_alone(world: World) -> None:
    create(world)  # pending
    assert world.reopen("run-1", A, 30.0) is None
    record = world.get_run("run-1")
    assert record is not None and record.status == "pending" and record.lease_owner is None
