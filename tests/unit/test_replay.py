"""The replay engine as a pure function of (workflow, input, event log): no world involved."""

from __future__ import annotations

import asyncio
import json

import pytest

import durable
from durable import NonDeterminismError, RetryPolicy, replay, step
from durable._serialization import dumps
from durable.world import Event

executed: list[str] = []


@pytest.fixture(autouse=True)
def _clear():
    executed.clear()


@step
def fetch(user: str) -> dict[str, str]:
    executed.append(f"fetch:{user}")
    return {"user": user}


@step(retry=RetryPolicy(max_attempts=2))
def send(to: str) -> str:
    executed.append(f"send:{to}")
    return f"sent to {to}"


def signup(user: str) -> str:
    profile = fetch(user)
    durable.sleep("7 days")
    return send(profile["user"])


class Log:
    """Builds an event log by hand."""

    def __init__(self, run_id: str = "run") -> None:
        self.run_id = run_id
        self.events: list[Event] = [Event(run_id, 1, "run_created", None, "wf", None, 0.0)]

    def add(self, kind: str, op_id: str, name: str, data: bytes | None) -> Log:
        seq = len(self.events) + 1
        self.events.append(Event(self.run_id, seq, kind, op_id, name, data, float(seq)))
        return self

    def step(self, op_id: str, name: str, result: object) -> Log:
        return self.add("step_completed", op_id, name, dumps(result))

    def failed(self, op_id: str, name: str, exc_type: str, message: str) -> Log:
        info = {"type": exc_type, "message": message, "traceback": "", "args": [message]}
        return self.add("step_failed", op_id, name, json.dumps(info).encode())

    def sleep(self, op_id: str, wake_at: float) -> Log:
        return self.add("sleep_started", op_id, "sleep", json.dumps({"wake_at": wake_at}).encode())

    def value(self, op_id: str, name: str, value: object) -> Log:
        return self.add("value_recorded", op_id, name, dumps(value))


def test_empty_log_asks_for_the_first_step():
    result = replay(signup, ["ada"], events=Log().events, now=0)
    assert result.status == "suspended"
    assert [(c.op_id, c.name, c.args) for c in result.commands] == [("1", "fetch", ("ada",))]
    assert executed == []


def test_recorded_step_is_not_executed_and_sleep_suspends():
    log = Log().step("1", "fetch", {"user": "ada"}).sleep("2", 1000.0)
    result = replay(signup, ["ada"], events=log.events, now=10)
    assert result.status == "suspended"
    assert result.wake_at == 1000.0
    assert result.commands == []
    assert executed == []


def test_after_the_sleep_the_next_step_is_commanded():
    log = Log().step("1", "fetch", {"user": "ada"}).sleep("2", 1000.0)
    result = replay(signup, ["ada"], events=log.events, now=1000.5)
    assert [(c.op_id, c.name, c.args) for c in result.commands] == [("3", "send", ("ada",))]


def test_full_log_completes_with_recorded_results():
    log = (
        Log()
        .step("1", "fetch", {"user": "ada"})
        .sleep("2", 1000.0)
        .step("3", "send", "sent to ada (recorded)")
    )
    result = replay(signup, ["ada"], events=log.events, now=2000)
    assert result.status == "completed"
    assert result.result == "sent to ada (recorded)"
    assert executed == []


def test_recorded_failure_is_raised_at_the_call_site():
    def wf() -> str:
        try:
            send("bob")
        except ConnectionError as exc:
            return f"caught {exc}"
        return "no error"

    log = Log().failed("1", "send", "builtins.ConnectionError", "refused")
    result = replay(wf, events=log.events, now=0)
    assert result.status == "completed"
    assert result.result == "caught refused"


def test_divergence_names_position_recorded_and_new():
    log = Log().step("1", "send", "sent")
    with pytest.raises(NonDeterminismError) as info:
        replay(signup, ["ada"], events=log.events, now=0)
    err = info.value
    assert (err.position, err.recorded, err.new) == ("1", "step 'send'", "step 'fetch'")
    assert "position 1" in str(err)


def test_sleep_where_a_step_was_recorded_diverges():
    def wf() -> None:
        fetch("x")
        durable.sleep(5)

    log = Log().step("1", "fetch", {"user": "x"}).step("2", "fetch", {"user": "y"})
    with pytest.raises(NonDeterminismError, match="position 2"):
        replay(wf, events=log.events, now=0)


def test_removed_trailing_step_diverges():
    def wf() -> str:
        return fetch("x")["user"]

    log = Log().step("1", "fetch", {"user": "x"}).step("2", "send", "sent")
    with pytest.raises(NonDeterminismError) as info:
        replay(wf, events=log.events, now=0)
    assert info.value.position == "2"
    assert "nothing" in info.value.new


def test_parallel_branches_have_ids_independent_of_completion_order():
    def wf() -> list[str]:
        return durable.parallel(lambda: send("a"), lambda: send("b"), lambda: send("c"))

    # The log holds branch 2 and 0 finished (in that order), branch 1 not yet.
    log = Log().step("1.2.1", "send", "C").step("1.0.1", "send", "A")
    result = replay(wf, events=log.events, now=0)
    assert result.status == "suspended"
    assert [(c.op_id, c.args) for c in result.commands] == [("1.1.1", ("b",))]
    log.step("1.1.1", "send", "B")
    assert replay(wf, events=log.events, now=0).result == ["A", "B", "C"]


def test_map_commands_every_missing_branch():
    def wf() -> list[str]:
        return durable.map(send, ["x", "y", "z"])

    result = replay(wf, events=Log().step("1.1.1", "send", "Y").events, now=0)
    assert sorted((c.op_id, c.args) for c in result.commands) == [
        ("1.0.1", ("x",)),
        ("1.2.1", ("z",)),
    ]


@step
async def afetch(user: str) -> str:
    executed.append(f"afetch:{user}")
    return user.upper()


async def branch(user: str) -> str:
    first = await afetch(user)
    return await send(first)


def test_async_gather_ids_follow_call_order():
    async def wf() -> list[str]:
        direct = await asyncio.gather(afetch("a"), afetch("b"))
        nested = await asyncio.gather(branch("c"), branch("d"))
        return [*direct, *nested]

    log = (
        Log()
        .step("2", "afetch", "B")
        .step("1", "afetch", "A")
        .step("4.1", "afetch", "D")
        .step("3.1", "afetch", "C")
        .step("4.2", "send", "sent D")
        .step("3.2", "send", "sent C")
    )
    result = replay(wf, events=log.events, now=0)
    assert result.status == "completed", result
    assert result.result == ["A", "B", "sent C", "sent D"]
    assert executed == []


async def taskgroup_of_branches() -> list[str]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(branch(user)) for user in ("a", "b")]
    return [task.result() for task in tasks]


def test_a_taskgroup_commands_every_branch_that_waits():
    # TaskGroup cancels the other branches once one raises: the first to block must not hide
    # the others' commands, and the group's exception is the replay's suspension.
    result = replay(taskgroup_of_branches, events=Log().events, now=0)
    assert result.status == "suspended", result
    assert [(c.op_id, c.name) for c in result.commands] == [("1.1", "afetch"), ("2.1", "afetch")]

    log = Log().step("1.1", "afetch", "A").step("2.1", "afetch", "B")
    log.step("1.2", "send", "sent A").step("2.2", "send", "sent B")
    assert replay(taskgroup_of_branches, events=log.events, now=0).result == ["sent A", "sent B"]


def test_a_divergence_in_a_taskgroup_wins_over_a_branch_that_waits():
    log = Log().step("2.1", "send", "sent B")
    with pytest.raises(NonDeterminismError):
        replay(taskgroup_of_branches, events=log.events, now=0)


def test_values_are_replayed_from_the_log():
    def wf() -> list[object]:
        return [durable.now().timestamp(), durable.random(), str(durable.uuid4())]

    uuid = "12345678-1234-5678-1234-567812345678"
    log = Log().value("1", "now", 42.0).value("2", "random", 0.25).value("3", "uuid4", uuid)
    assert replay(wf, events=log.events, now=0).result == [42.0, 0.25, uuid]


def test_new_values_are_returned_as_events_to_record():
    def wf() -> float:
        return durable.random()

    result = replay(wf, events=Log().events, now=0)
    assert result.status == "completed"
    assert [(e.kind, e.op_id, e.name) for e in result.new_events] == [
        ("value_recorded", "1", "random")
    ]


def test_recorded_retry_delay_suspends_until_retry_time():
    def wf() -> str:
        return send("x")

    info = {"type": "builtins.OSError", "message": "x", "traceback": "", "attempt": 1,
            "retry_at": 500.0}
    log = Log().add("step_retrying", "1", "send", json.dumps(info).encode())
    result = replay(wf, events=log.events, now=100)
    assert (result.status, result.wake_at, result.commands) == ("suspended", 500.0, [])
    # A pure replay never performs a step: it asks for it.
    assert replay(wf, events=log.events, now=600).commands[0].op_id == "1"


def test_a_finally_performs_nothing_while_the_replay_blocks():
    def wf() -> str:
        try:
            return send(fetch("ada")["user"])
        finally:
            send("audit")

    result = replay(wf, events=Log().events, now=0)
    assert result.status == "suspended"
    assert [(c.op_id, c.name) for c in result.commands] == [("1", "fetch")]


def changed_signup(user: str) -> str:
    profile = fetch(user)
    if durable.patched("sms"):
        return send(f"sms:{profile['user']}")
    durable.sleep("7 days")
    return send(profile["user"])


def test_a_patch_is_false_where_the_log_holds_the_old_code_and_true_where_it_holds_nothing():
    old = Log().step("1", "fetch", {"user": "ada"}).sleep("2", 1000.0)
    result = replay(changed_signup, ["ada"], events=old.events, now=2000)
    assert [(c.op_id, c.name, c.args) for c in result.commands] == [("3", "send", ("ada",))]
    assert result.new_events == []

    fresh = Log().step("1", "fetch", {"user": "ada"})
    result = replay(changed_signup, ["ada"], events=fresh.events, now=0)
    assert [(c.op_id, c.args) for c in result.commands] == [("3", ("sms:ada",))]
    [marker] = result.new_events
    assert (marker.kind, marker.op_id, marker.name) == ("value_recorded", "2", "patched:sms")

    patched = fresh.value("2", "patched:sms", True).step("3", "send", "sent to sms:ada")
    result = replay(changed_signup, ["ada"], events=patched.events, now=0)
    assert (result.status, result.result, executed) == ("completed", "sent to sms:ada", [])
