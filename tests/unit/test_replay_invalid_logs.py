"""replay() given a log no world could have written says which event is wrong and how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import durable
from durable import InvalidEventLog, replay
from durable._serialization import dumps
from durable.world import Event
from tests.conftest import running_engine


@durable.step
def invalid_log_fetch(user: str) -> dict[str, str]:
    return {"user": user}


def signup(user: str) -> str:
    profile = invalid_log_fetch(user)
    durable.sleep("7 days")
    return invalid_log_fetch(profile["user"])["user"]


def event(seq: int, kind: str, op_id: str | None, name: str | None, data: object) -> Event:
    return Event("run", seq, kind, op_id, name, data, float(seq))  # type: ignore[arg-type]


CREATED = event(1, "run_created", None, "signup", None)
FETCHED = event(2, "step_completed", "1", "invalid_log_fetch", dumps({"user": "ada"}))


def sleep_event(data: bytes) -> Event:
    return event(3, "sleep_started", "2", "sleep", data)


# (log, index of the bad event, words the message must hold)
MALFORMED: dict[str, tuple[list[object], int, str]] = {
    "events out of seq order": (
        [CREATED, event(3, "sleep_started", "2", "sleep", b'{"wake_at": 5}'), FETCHED],
        2,
        "seq 2 does not follow the previous event's seq 3",
    ),
    "a seq used twice": ([CREATED, event(1, "step_completed", "1", "x", b"1")], 1, "seq 1"),
    "a seq that is not an int": (
        [CREATED, event("2", "step_completed", "1", "x", b"1")],  # type: ignore[arg-type]
        1,
        "seq is '2', not an int",
    ),
    "a step_completed with no name": (
        [CREATED, event(2, "step_completed", "1", None, dumps({"user": "ada"}))],
        1,
        "step_completed event needs the operation's name",
    ),
    "a step_completed with no op_id": (
        [CREATED, event(2, "step_completed", None, "invalid_log_fetch", b"1")],
        1,
        "needs the operation's op_id",
    ),
    "undecodable data bytes": (
        [CREATED, event(2, "step_completed", "1", "invalid_log_fetch", b"\xff\xfe{")],
        1,
        "its data cannot be decoded",
    ),
    "a result that is not valid JSON": (
        [CREATED, event(2, "step_completed", "1", "invalid_log_fetch", b"{user:")],
        1,
        "its data cannot be decoded",
    ),
    "data given as str": (
        [CREATED, event(2, "step_completed", "1", "invalid_log_fetch", '{"user": "ada"}')],
        1,
        "its data is a str, not bytes",
    ),
    "an unknown event kind": (
        [CREATED, event(2, "step_finished", "1", "invalid_log_fetch", b"1")],
        1,
        "kind 'step_finished' is unknown (known kinds: ",
    ),
    "a log without run_created": ([FETCHED], 0, "a log starts with a run_created event"),
    "a second run_created": (
        [CREATED, FETCHED, event(3, "run_created", None, "signup", None)],
        2,
        "run_created appears after",
    ),
    "a sleep whose payload is not JSON": (
        [CREATED, FETCHED, sleep_event(b"soon")],
        2,
        "its data is not JSON",
    ),
    "a sleep without its wake_at": ([CREATED, FETCHED, sleep_event(b"{}")], 2, "no 'wake_at'"),
    "a sleep whose wake_at is text": (
        [CREATED, FETCHED, sleep_event(b'{"wake_at": "tomorrow"}')],
        2,
        "'wake_at' is 'tomorrow', not a number",
    ),
    "a step_failed that is a JSON list": (
        [CREATED, event(2, "step_failed", "1", "invalid_log_fetch", b"[1]")],
        1,
        "its data is JSON list, not an object",
    ),
    "a step_retrying without retry_at": (
        [CREATED, event(2, "step_retrying", "1", "invalid_log_fetch", b"{}")],
        1,
        "no 'retry_at'",
    ),
    "a run_retried that is not JSON": (
        [CREATED, event(2, "run_retried", None, None, b"x")],
        1,
        "its data is not JSON",
    ),
    "a run-level event with an op_id": (
        [CREATED, FETCHED, event(3, "run_completed", "3", None, None)],
        2,
        "about the whole run, yet has op_id '3'",
    ),
    "an event of another run": (
        [CREATED, Event("other", 2, "step_completed", "1", "invalid_log_fetch", b"1", 2.0)],
        1,
        "belongs to run 'other'",
    ),
    "something that is not an Event": ([CREATED, {"seq": 2}], 1, "a dict, not a durable.Event"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_log_raises_invalid_event_log_naming_the_event(case: str) -> None:
    log, index, words = MALFORMED[case]
    with pytest.raises(InvalidEventLog) as info:
        replay(signup, ["ada"], events=log, now=0)  # type: ignore[arg-type]
    error = info.value
    assert error.index == index
    assert words in error.problem
    message = str(error)
    assert f"events[{index}]" in message
    assert "A valid log is what Run.events()" in message  # and how to build one
    assert isinstance(error, durable.DurableError) and isinstance(error, ValueError)


def test_the_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(InvalidEventLog(3, "its kind 'x' is unknown")))
    assert (error.index, error.problem) == (3, "its kind 'x' is unknown")


def test_well_formed_hand_built_logs_still_replay() -> None:
    assert replay(signup, ["ada"], events=[], now=0).status == "suspended"
    log = [CREATED, FETCHED, sleep_event(json.dumps({"wake_at": 10.0}).encode())]
    assert replay(signup, ["ada"], events=log, now=0).wake_at == 10.0
    done = replay(
        signup,
        ["ada"],
        events=[*log, event(4, "step_completed", "3", "invalid_log_fetch", dumps({"user": "bo"}))],
        now=20,
    )
    assert (done.status, done.result) == ("completed", "bo")


# Every kind of event a world writes, checked as recorded: the check refuses nothing real.


class Flaky(Exception):
    pass


attempts: dict[str, int] = {}


@durable.step(retry=durable.RetryPolicy(max_attempts=2, initial_delay=1.0, jitter=False))
def invalid_log_flaky(key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise durable.RetryableError("first attempt fails", retry_after=2)
    return "second attempt"


@durable.step(retry=durable.RetryPolicy(max_attempts=1))
def invalid_log_broken() -> None:
    raise Flaky("always")


@durable.step
def invalid_log_resume(token: str) -> None:
    durable.resume_hook(token, {"approved": True})


@durable.workflow(name="invalid_log_child")
def invalid_log_child(n: int) -> int:
    return n * 2


@durable.workflow(name="invalid_log_everything")
def invalid_log_everything(key: str) -> list[object]:
    out: list[object] = [invalid_log_flaky(key)]
    try:
        invalid_log_broken()
    except Flaky as exc:
        out.append(str(exc))
    durable.sleep("1 hour")
    out.append(invalid_log_child(21))
    out.append(len(str(durable.uuid4())))
    hook = durable.create_hook(timeout="1 minute")
    try:
        hook.wait()
    except durable.HookTimeout:
        out.append("hook timed out")
    approval = durable.create_hook(token=f"invalid-log-approval:{key}")
    invalid_log_resume(approval.token)
    out.append(approval.wait())
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_logs_recorded_by_worlds_are_valid(kind: str, tmp_path: Path) -> None:
    expected = ["second attempt", "always", 42, 36, "hook timed out", {"approved": True}]
    with running_engine(kind, False, tmp_path):
        run = invalid_log_everything.start(kind)
        assert run.result(timeout=20) == expected
        events = run.events()
        # (inside the engine: replaying a child's call reads the child's outcome from the world)
        replayed = replay(invalid_log_everything, [kind], events=events)
    kinds = {e.kind for e in events}
    assert {"step_retrying", "step_failed", "sleep_started", "child_started"} <= kinds
    assert {"value_recorded", "hook_created", "hook_timed_out", "hook_received"} <= kinds
    assert (replayed.status, replayed.result, replayed.error) == ("completed", expected, None)
