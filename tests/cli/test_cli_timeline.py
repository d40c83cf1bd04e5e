"""The timeline `durable inspect` shows, rebuilt from hand-made logs (no world, no processes)."""

from __future__ import annotations

import json

import pytest

from cli._timeline import build_timeline, op_key
from cli._values import decode, format_duration, plain
from durable.world import Event, RunRecord

T0 = 1_000_000.0


def _record(status="completed", **changes):
    fields = dict(
        id="r1",
        workflow_name="wf",
        status=status,
        input=b'{"args":[],"kwargs":{}}',
        output=None,
        error=None,
        created_at=T0,
        updated_at=T0 + 100,
        wake_at=None,
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
        parent_id=None,
        last_seq=0,
    )
    fields.update(changes)
    return RunRecord(**fields)


def _log(*entries):
    """Entries are (offset seconds, kind, op_id, name, data dict or None)."""
    events = [Event("r1", 1, "run_created", None, "wf", None, T0)]
    for offset, kind, op_id, name, data in entries:
        payload = json.dumps(data).encode() if data is not None else None
        events.append(Event("r1", len(events) + 1, kind, op_id, name, payload, T0 + offset))
    return events


def test_sequential_steps_start_when_the_previous_one_ends():
    events = _log(
        (1.0, "step_completed", "1", "a", "x"),
        (1.5, "step_completed", "2", "b", "y"),
        (1.6, "run_completed", None, None, None),
    )
    timeline = build_timeline(_record(), events, now=T0 + 10)
    a, b = timeline.operations
    assert (a.started_at, a.finished_at, a.duration) == (T0, T0 + 1.0, 1.0)
    assert (b.started_at, b.duration) == (T0 + 1.0, 0.5)
    assert b.value == "y"
    assert timeline.finished_at == T0 + 1.6


def test_retries_count_attempts_and_the_next_attempt_starts_at_retry_at():
    events = _log(
        (0.2, "step_retrying", "1", "s", {"type": "OSError", "message": "m1", "attempt": 1,
                                          "retry_at": T0 + 1.2}),
        (1.3, "step_retrying", "1", "s", {"type": "OSError", "message": "m2", "attempt": 2,
                                          "retry_at": T0 + 3.3}),
        (3.5, "step_failed", "1", "s", {"type": "OSError", "message": "m3", "attempts": 3}),
    )
    [op] = build_timeline(_record("failed"), events, now=T0 + 10).operations
    assert op.status == "failed"
    assert [a.number for a in op.attempts] == [1, 2, 3]
    assert [a.started_at for a in op.attempts] == [T0, T0 + 1.2, T0 + 3.3]
    assert [a.error["message"] for a in op.attempts if a.error] == ["m1", "m2", "m3"]
    assert op.error == {"type": "OSError", "message": "m3"}
    assert op.duration == pytest.approx(3.5)


def test_a_step_waiting_to_retry_in_a_live_run_is_retrying():
    retrying = {"type": "E", "message": "", "retry_at": T0 + 60}
    events = _log((0.2, "step_retrying", "1", "s", retrying))
    [op] = build_timeline(_record("suspended"), events, now=T0 + 1).operations
    assert op.status == "retrying" and op.finished_at is None and op.duration is None


def test_parallel_branches_start_after_what_precedes_the_group():
    events = _log(
        (1.0, "step_completed", "1", "first", None),
        (1.0, "sleep_started", "2", "sleep", {"wake_at": T0 + 5.0}),
        (5.4, "step_completed", "3.1.1", "right", None),
        (5.2, "step_completed", "3.0.1", "left", None),
        (5.9, "step_completed", "3.0.2", "left_again", None),
        (6.0, "value_recorded", "4", "now", T0 + 6.0),
        (6.5, "step_completed", "5", "after", None),
    )
    ops = {op.op_id: op for op in build_timeline(_record(), events, now=T0 + 10).operations}
    assert list(ops) == ["1", "2", "3.0.1", "3.0.2", "3.1.1", "4", "5"]
    assert ops["2"].kind == "sleep" and ops["2"].duration == pytest.approx(4.0)
    assert ops["3.0.1"].started_at == T0 + 5.0  # when the sleep ended
    assert ops["3.1.1"].started_at == T0 + 5.0  # not after its sibling branch's step
    assert ops["3.0.2"].started_at == T0 + 5.2  # after the previous step of its own branch
    assert ops["5"].started_at == T0 + 5.9  # after the whole group; values do not count
    assert ops["4"].kind == "value" and ops["4"].value == T0 + 6.0


def test_sleeps_are_sleeping_until_due_and_interrupted_by_cancellation():
    events = _log((0.1, "sleep_started", "1", "sleep", {"wake_at": T0 + 3600}))
    [op] = build_timeline(_record("suspended"), events, now=T0 + 10).operations
    assert (op.status, op.wake_at) == ("sleeping", T0 + 3600)

    cancelled = [*events, Event("r1", 3, "run_cancelled", None, None, None, T0 + 20)]
    [op] = build_timeline(_record("cancelled"), cancelled, now=T0 + 30).operations
    assert (op.status, op.finished_at) == ("interrupted", T0 + 20)


def test_a_step_between_creating_a_hook_and_waiting_on_it_starts_at_the_creation():
    # hook = create_hook(); send_link(hook.token)  [4 s]; hook.wait()  [payload at 5.3 s]; done()
    events = _log(
        (0.1, "hook_created", "1", "hook", {"token": "verify:1"}),
        (4.1, "step_completed", "2", "send_link", None),
        (5.3, "hook_received", "1", "verify:1", {"ok": True}),
        (5.5, "step_completed", "3", "done", None),
        (5.6, "run_completed", None, None, None),
    )
    ops = {op.name: op for op in build_timeline(_record(), events, now=T0 + 10).operations}
    assert (ops["send_link"].started_at, ops["send_link"].duration) == (T0 + 0.1, 4.0)
    assert ops["done"].started_at == T0 + 5.3  # after the payload, not after the hook's creation


def test_a_hook_or_child_a_finished_run_still_waited_on_is_interrupted():
    events = _log(
        (0.1, "hook_created", "1", "hook", {"token": "approve:1"}),
        (0.2, "child_started", "2", "kid", {"run_id": "r1.2", "workflow": "kid"}),
    )
    ops = build_timeline(_record("suspended"), events, now=T0 + 10).operations
    assert [(op.name, op.status) for op in ops] == [("approve:1", "waiting"), ("kid", "waiting")]
    cancelled = [*events, Event("r1", 4, "run_cancelled", None, None, None, T0 + 20)]
    ops = build_timeline(_record("cancelled"), cancelled, now=T0 + 30).operations
    assert [op.status for op in ops] == ["interrupted", "interrupted"]


def test_op_ids_sort_in_program_order():
    ids = ["10", "2", "4.1.1", "4.0.2", "4.0.1", "3"]
    assert sorted(ids, key=op_key) == ["2", "3", "4.0.1", "4.0.2", "4.1.1", "10"]


def test_tagged_values_are_shown_as_plain_json():
    tagged = {
        "__durable__": "dataclass",
        "t": "app:User",
        "v": {
            "id": {"__durable__": "uuid", "v": "5f0c"},
            "tags": {"__durable__": "set", "v": ["a", "b"]},
            "ttl": {"__durable__": "timedelta", "v": [1, 30, 0]},
            "pair": {"__durable__": "tuple", "v": [1, 2]},
            "by_id": {"__durable__": "dict", "v": [[1, "x"]]},
        },
    }
    assert plain(tagged) == {
        "id": "5f0c",
        "tags": ["a", "b"],
        "ttl": 86430.0,
        "pair": [1, 2],
        "by_id": {"1": "x"},
    }
    assert decode(b"\x80\x05N.") == ("gAVOLg==", "pickle")
    assert decode(None) == (None, None)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.0004, "400 µs"), (0.0123, "12 ms"), (3.44, "3.4 s"), (302, "5 m 02 s"),
     (7 * 86400, "7 d")],
)
def test_durations_read_well(seconds, text):
    assert format_duration(seconds) == text


def test_a_hook_is_named_by_its_token():
    events = _log(
        (0.5, "hook_created", "1", "hook", {"token": "email-verified:42", "timeout_at": None}),
        (2.0, "hook_received", "1", "email-verified:42", {"ok": True}),
        (2.1, "run_completed", None, None, None),
    )
    [op] = build_timeline(_record(), events, now=T0 + 10).operations
    assert (op.kind, op.name, op.status) == ("hook", "email-verified:42", "completed")


def test_a_graph_branch_starts_when_the_branches_it_waits_for_have_ended():
    # A DAG: node 1.0. runs first, 1.1. and 1.2. after it, 1.3. after both (1.2. skipped).
    events = _log(
        (1.0, "step_completed", "1.0.1", "fetch", None),
        (1.5, "step_completed", "1.1.1", "left", None),
        (1.7, "step_completed", "1.1.2", "left_again", None),
        (2.5, "step_completed", "1.3.1", "join", None),
    )
    branches = {"1.0.": [], "1.1.": ["1.0."], "1.2.": ["1.0."], "1.3.": ["1.1.", "1.2."]}
    ops = {op.op_id: op for op in build_timeline(_record(), events, T0 + 10, branches).operations}
    assert ops["1.0.1"].started_at == T0
    assert ops["1.1.1"].started_at == T0 + 1.0
    assert ops["1.1.2"].started_at == T0 + 1.5
    assert ops["1.3.1"].started_at == T0 + 1.7
    assert ops["1.3.1"].attempts[0].started_at == T0 + 1.7
    unrelated = {op.op_id: op for op in build_timeline(_record(), events, T0 + 10).operations}
    assert unrelated["1.3.1"].started_at == T0  # without the graph, branches start together


def test_a_step_run_again_by_a_retry_starts_at_the_retry_not_at_the_failure():
    events = _log(
        (1.0, "step_completed", "1", "a", "x"),
        (1.5, "step_failed", "2", "b", {"type": "OSError", "message": "down"}),
        (1.6, "run_failed", None, None, {"type": "OSError", "message": "down"}),
        (60.0, "run_retried", None, None, {"steps": ["2"]}),
        (60.3, "step_completed", "2", "b", "y"),
        (60.4, "run_completed", None, None, None),
    )
    timeline = build_timeline(_record(), events, now=T0 + 100)
    a, b = timeline.operations
    assert (b.started_at, b.duration, b.value) == (T0 + 60.0, pytest.approx(0.3), "y")
    assert [x.number for x in b.attempts] == [1]
