"""The hook part of the World contract (``durable/world.py``), checked on every world."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import pytest

from durable._errors import HookConflict, HookNotFound, LeaseLost
from durable.world import (
    FINISHED_STATUSES,
    HookRecord,
    NewEvent,
    NewRun,
    RunStatus,
    RunUpdate,
    World,
)
from tests.conformance.load import volume

START = 1_700_000_000.0
"""Where the ``clock`` fixture (``conftest.FakeClock``) starts."""
TTL = 30.0
A = "worker-a"
B = "worker-b"


class FakeClock(Protocol):
    def __call__(self) -> float: ...
    def advance(self, seconds: float) -> float: ...


def create(world: World, run_id: str = "run-1", owner: str | None = A) -> None:
    _, created = world.create_run(NewRun(run_id, "wf", b"input"), owner=owner, lease_ttl=TTL)
    assert created


def hook(
    world: World,
    token: str = "tok",
    run_id: str = "run-1",
    op_id: str = "2",
    *,
    timeout_at: float | None = None,
    schema: str | None = None,
) -> HookRecord:
    return HookRecord(token, run_id, op_id, world.now(), timeout_at, schema)


def created_event(record: HookRecord) -> NewEvent:
    return NewEvent("hook_created", record.op_id, record.token, b"created")


def add_hook(world: World, owner: str = A, **kwargs: object) -> HookRecord:
    record = hook(world, **kwargs)  # type: ignore[arg-type]
    world.create_hook(owner, record, created_event(record))
    return record


def suspend(
    world: World,
    run_id: str = "run-1",
    owner: str = A,
    wake_at: float | None = None,
    expected_seq: int | None = None,
) -> None:
    world.append(
        run_id,
        owner,
        [NewEvent("hook_waiting", "3")],
        RunUpdate("suspended", wake_at=wake_at, release=True, expected_seq=expected_seq),
    )


def finish(world: World, run_id: str = "run-1", owner: str = A, status: str = "completed") -> None:
    world.append(
        run_id,
        owner,
        [NewEvent(f"run_{status}")],
        RunUpdate(status, release=True),  # type: ignore[arg-type]
    )


def kinds(world: World, run_id: str = "run-1") -> list[str]:
    return [e.kind for e in world.read_events(run_id)]


def last_seq(world: World, run_id: str = "run-1") -> int:
    record = world.get_run(run_id)
    assert record is not None
    return record.last_seq


# -- create_hook --------------------------------------------------------------------------------


def test_create_hook_registers_it_and_appends_its_event(world: World) -> None:
    create(world)
    record = add_hook(world, timeout_at=START + 60, schema="app.models:Approval")
    assert world.list_hooks() == [record]
    assert world.list_hooks("run-1") == [record]
    event = world.read_events("run-1")[-1]
    assert (event.seq, event.kind, event.op_id, event.name, event.data) == (
        2,
        "hook_created",
        "2",
        "tok",
        b"created",
    )
    assert last_seq(world) == 2
    run = world.get_run("run-1")
    assert run is not None and run.status == "running" and run.lease_owner == A


def test_create_hook_needs_the_lease(world: World) -> None:
    create(world)
    record = hook(world)
    with pytest.raises(LeaseLost):
        world.create_hook(B, record, created_event(record))
    with pytest.raises(LeaseLost):
        world.create_hook(A, hook(world, run_id="missing"), created_event(record))
    assert world.list_hooks() == []
    assert kinds(world) == ["run_created"]


def test_a_live_token_cannot_be_taken_by_another_hook(world: World) -> None:
    create(world, "run-1")
    create(world, "run-2", owner=B)
    first = add_hook(world, token="email-verified:42")
    with pytest.raises(HookConflict) as raised:
        add_hook(world, B, token="email-verified:42", run_id="run-2")
    assert raised.value.token == "email-verified:42"
    assert raised.value.run_id == "run-1"
    assert "email-verified:42" in str(raised.value)
    # The same run at another operation conflicts too.
    with pytest.raises(HookConflict):
        add_hook(world, token="email-verified:42", op_id="7")
    assert world.list_hooks() == [first]
    assert kinds(world, "run-2") == ["run_created"]
    assert kinds(world, "run-1") == ["run_created", "hook_created"]


def test_creating_the_same_hook_again_does_nothing(world: World, clock: FakeClock) -> None:
    create(world)
    first = add_hook(world)
    clock.advance(5)
    again = hook(world, timeout_at=START + 99)
    world.create_hook(A, again, created_event(again))
    assert world.list_hooks() == [first]
    assert kinds(world) == ["run_created", "hook_created"]


def test_a_disposed_token_can_be_used_again(world: World) -> None:
    create(world, "run-1")
    create(world, "run-2", owner=B)
    add_hook(world)
    assert world.dispose_hook("run-1", A, "tok")
    second = add_hook(world, B, run_id="run-2")
    assert world.list_hooks() == [second]


# -- resume_hook --------------------------------------------------------------------------------


def test_resume_appends_hook_received_and_wakes_a_suspended_run(
    world: World, clock: FakeClock
) -> None:
    create(world)
    record = add_hook(world)
    suspend(world)
    assert world.claim_due(B, TTL, 10) == []
    assert world.next_due_at() is None
    now = clock.advance(7)
    assert world.resume_hook("tok", b'{"ok": true}') == record
    event = world.read_events("run-1")[-1]
    assert (event.seq, event.kind, event.op_id, event.name, event.data, event.created_at) == (
        4,
        "hook_received",
        "2",
        "tok",
        b'{"ok": true}',
        now,
    )
    run = world.get_run("run-1")
    assert run is not None
    assert (run.status, run.wake_at, run.updated_at, run.last_seq) == ("suspended", now, now, 4)
    assert run.lease_owner is None
    assert world.next_due_at() == now
    [claimed] = world.claim_due(B, TTL, 10)
    assert claimed.id == "run-1" and claimed.last_seq == 4


def test_resume_while_the_run_is_running_needs_no_lease(world: World, clock: FakeClock) -> None:
    create(world)
    add_hook(world)
    now = clock.advance(1)
    world.resume_hook("tok", b"early")
    run = world.get_run("run-1")
    assert run is not None
    assert (run.status, run.lease_owner, run.wake_at, run.last_seq) == ("running", A, None, 3)
    assert run.updated_at == now
    # The worker keeps its lease and its next event comes after the payload.
    world.append("run-1", A, [NewEvent("step_completed", "3", "s", b"x")])
    assert kinds(world) == ["run_created", "hook_created", "hook_received", "step_completed"]
    assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3, 4]


def test_resume_of_a_pending_run_leaves_its_due_time(world: World, clock: FakeClock) -> None:
    create(world)
    add_hook(world)
    world.release("run-1", A)
    before = world.get_run("run-1")
    assert before is not None and before.status == "pending"
    clock.advance(3)
    world.resume_hook("tok", b"p")
    run = world.get_run("run-1")
    assert run is not None
    assert (run.status, run.wake_at, run.last_seq) == ("pending", before.wake_at, 3)


def test_a_hook_receives_several_payloads_until_disposed(world: World) -> None:
    create(world)
    add_hook(world)
    for payload in (b"1", b"2", b"3"):
        world.resume_hook("tok", payload)
    received = [e for e in world.read_events("run-1") if e.kind == "hook_received"]
    assert [(e.seq, e.data) for e in received] == [(3, b"1"), (4, b"2"), (5, b"3")]
    assert world.dispose_hook("run-1", A, "tok")
    with pytest.raises(HookNotFound):
        world.resume_hook("tok", b"4")


def test_resume_of_an_unknown_token(world: World) -> None:
    create(world)
    with pytest.raises(HookNotFound) as raised:
        world.resume_hook("nope", b"x")
    assert raised.value.token == "nope"
    assert "nope" in str(raised.value)
    assert kinds(world) == ["run_created"]


def test_resume_of_a_disposed_hook(world: World) -> None:
    create(world)
    add_hook(world)
    assert world.dispose_hook("run-1", A, "tok", NewEvent("hook_disposed", "2", "tok"))
    with pytest.raises(HookNotFound):
        world.resume_hook("tok", b"late")
    assert kinds(world) == ["run_created", "hook_created", "hook_disposed"]


def test_resume_after_the_hooks_timeout_is_refused(world: World, clock: FakeClock) -> None:
    # A run whose wait timed out while no worker ran it takes its timeout path when it is
    # taken over; a payload accepted meanwhile would turn it onto the other one.
    create(world)
    add_hook(world, timeout_at=START + 60)
    clock.advance(59)
    world.resume_hook("tok", b"in time")
    clock.advance(1)
    with pytest.raises(HookNotFound, match="hook 'tok' timed out at 2023-11-14T22:14:20") as late:
        world.resume_hook("tok", b"too late")
    assert late.value.timed_out_at == START + 60
    assert kinds(world) == ["run_created", "hook_created", "hook_received"]


@pytest.mark.parametrize("status", sorted(FINISHED_STATUSES))
def test_finishing_a_run_drops_its_hooks(world: World, status: RunStatus) -> None:
    create(world, "run-1")
    create(world, "run-2", owner=B)
    add_hook(world, token="a")
    add_hook(world, token="b", op_id="3")
    other = add_hook(world, B, token="c", run_id="run-2")
    finish(world, status=status)
    assert world.list_hooks() == [other]
    assert world.list_hooks("run-1") == []
    for token in ("a", "b"):
        with pytest.raises(HookNotFound):
            world.resume_hook(token, b"late")
    assert kinds(world)[-1] == f"run_{status}"
    world.resume_hook("c", b"still live")


def test_a_suspension_keeps_the_hooks(world: World) -> None:
    create(world)
    record = add_hook(world)
    suspend(world)
    assert world.list_hooks() == [record]


# -- dispose_hook -------------------------------------------------------------------------------


def test_dispose_without_expected_seq(world: World) -> None:
    create(world)
    add_hook(world)
    world.resume_hook("tok", b"p")
    assert world.dispose_hook("run-1", A, "tok") is True
    assert world.list_hooks() == []
    assert kinds(world) == ["run_created", "hook_created", "hook_received"]


def test_dispose_with_expected_seq(world: World) -> None:
    create(world)
    add_hook(world)
    seen = last_seq(world)
    world.resume_hook("tok", b"arrived meanwhile")
    timed_out = NewEvent("hook_timed_out", "2", "tok")
    assert world.dispose_hook("run-1", A, "tok", timed_out, expected_seq=seen) is False
    assert [h.token for h in world.list_hooks()] == ["tok"]
    assert kinds(world) == ["run_created", "hook_created", "hook_received"]
    seen = last_seq(world)
    assert world.dispose_hook("run-1", A, "tok", timed_out, expected_seq=seen) is True
    assert world.list_hooks() == []
    event = world.read_events("run-1")[-1]
    assert (event.seq, event.kind, event.op_id, event.name) == (4, "hook_timed_out", "2", "tok")
    with pytest.raises(HookNotFound):
        world.resume_hook("tok", b"late")
    assert last_seq(world) == 4


def test_dispose_needs_the_lease(world: World) -> None:
    create(world)
    add_hook(world)
    with pytest.raises(LeaseLost):
        world.dispose_hook("run-1", B, "tok", NewEvent("hook_disposed", "2", "tok"))
    with pytest.raises(LeaseLost):
        world.dispose_hook("missing", A, "tok")
    assert [h.token for h in world.list_hooks()] == ["tok"]
    assert kinds(world) == ["run_created", "hook_created"]


def test_dispose_leaves_other_runs_hooks_alone(world: World) -> None:
    create(world, "run-1")
    create(world, "run-2", owner=B)
    other = add_hook(world, B, run_id="run-2")
    event = NewEvent("hook_disposed", "2", "tok")
    assert world.dispose_hook("run-1", A, "tok", event) is True
    assert world.list_hooks() == [other]
    assert kinds(world, "run-1") == ["run_created", "hook_disposed"]
    # Disposing of an unknown token is not an error either.
    assert world.dispose_hook("run-1", A, "never") is True


# -- list_hooks ---------------------------------------------------------------------------------


def test_list_hooks_oldest_first(world: World, clock: FakeClock) -> None:
    assert world.list_hooks() == []
    create(world, "run-1")
    create(world, "run-2", owner=B)
    created = []
    for i, (run_id, owner, token) in enumerate(
        [("run-2", B, "z"), ("run-1", A, "y"), ("run-2", B, "x"), ("run-1", A, "w")]
    ):
        clock.advance(1)
        created.append(add_hook(world, owner, token=token, run_id=run_id, op_id=str(i + 2)))
    assert world.list_hooks() == created
    assert world.list_hooks("run-1") == [created[1], created[3]]
    assert world.list_hooks("run-2") == [created[0], created[2]]
    assert world.list_hooks("nope") == []
    # Hooks created at the same instant come in token order.
    create(world, "run-3")
    same = [add_hook(world, token=t, run_id="run-3", op_id=t) for t in ("b", "a")]
    assert world.list_hooks("run-3") == same[::-1]


# -- expected_seq on suspension -----------------------------------------------------------------


def test_a_payload_during_execution_makes_the_suspension_due_now(
    world: World, clock: FakeClock
) -> None:
    create(world)
    add_hook(world)
    seen = last_seq(world)
    world.resume_hook("tok", b"early")
    now = clock.advance(2)
    suspend(world, wake_at=START + 3600, expected_seq=seen)
    run = world.get_run("run-1")
    assert run is not None
    assert (run.status, run.wake_at, run.lease_owner) == ("suspended", now, None)
    assert [r.id for r in world.claim_due(B, TTL, 10)] == ["run-1"]


def test_an_up_to_date_suspension_keeps_its_wake_time(world: World) -> None:
    create(world)
    add_hook(world)
    world.resume_hook("tok", b"seen")
    suspend(world, wake_at=START + 3600, expected_seq=last_seq(world))
    run = world.get_run("run-1")
    assert run is not None and run.wake_at == START + 3600
    assert world.claim_due(B, TTL, 10) == []
    world.resume_hook("tok", b"later")
    run = world.get_run("run-1")
    assert run is not None and run.wake_at == START


def test_expected_seq_counts_only_events_before_the_append(world: World) -> None:
    create(world)
    world.append("run-1", A, [NewEvent("step_completed", "1", "s")])
    seen = last_seq(world)
    # The suspension's own events do not count as news.
    world.append(
        "run-1",
        A,
        [NewEvent("a", "2"), NewEvent("b", "3")],
        RunUpdate("suspended", wake_at=None, release=True, expected_seq=seen),
    )
    run = world.get_run("run-1")
    assert run is not None and run.wake_at is None and run.last_seq == seen + 2


# -- concurrency --------------------------------------------------------------------------------


def resume_concurrently(worlds: list[World], tokens: list[str]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(worlds))

    def resume(world: World, mine: list[str]) -> None:
        barrier.wait()
        for token in mine:
            try:
                world.resume_hook(token, f"payload-{token}".encode())
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

    threads = [
        threading.Thread(target=resume, args=(w, tokens[i :: len(worlds)]))
        for i, w in enumerate(worlds)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def check_delivered_once(world: World, tokens: list[str]) -> None:
    events = world.read_events("run-1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    received = [e for e in events if e.kind == "hook_received"]
    assert Counter(e.name for e in received) == Counter(tokens)
    for e in received:
        assert e.data == f"payload-{e.name}".encode()
        assert e.op_id == f"op-{e.name}"
    run = world.get_run("run-1")
    assert run is not None
    assert run.last_seq == len(events) == 2 + 2 * len(tokens)  # created, waiting
    assert run.status == "suspended" and run.wake_at == START


def start_100_hooks(world: World) -> list[str]:
    create(world)
    tokens = [f"hook-{i:03d}" for i in range(volume(world, 100))]
    for token in tokens:
        add_hook(world, token=token, op_id=f"op-{token}")
    suspend(world)
    return tokens


def test_100_hooks_resumed_from_4_threads(world: World) -> None:
    tokens = start_100_hooks(world)
    assert resume_concurrently([world] * 4, tokens) == []
    check_delivered_once(world, tokens)


def test_100_hooks_resumed_through_4_handles(world: World, open_again: Callable[[], World]) -> None:
    tokens = start_100_hooks(world)
    handles = [world, open_again(), open_again(), open_again()]
    assert resume_concurrently(handles, tokens) == []
    check_delivered_once(world, tokens)
    check_delivered_once(handles[3], tokens)
