"""The tables `runs`, `inspect` and `events` print, at the widths of real terminals and pipes."""

from __future__ import annotations

import json
import re
import time

import pytest
from rich.console import Console

from cli._grid import Column, Grid, wrap
from cli._render import events_table, operations_table, run_header, runs_table, timeline_chart
from cli._timeline import build_timeline
from cli._waits import open_waits
from durable.world import Event, RunRecord
from tests.exited import exited_owner

T0 = 1_000_000.0
RUN_ID = "wrun_01a203ffd5f3ccf49e18daed67482f1c"


def record(run_id=RUN_ID, status="completed", **changes) -> RunRecord:
    fields = dict(
        id=run_id, workflow_name="process_order", status=status,
        input=b'{"args":[],"kwargs":{}}', output=b"1", error=None, created_at=T0,
        updated_at=T0 + 2, wake_at=None, lease_owner=None, lease_expires_at=None,
        cancel_requested=False, parent_id=None, last_seq=0,
    )
    fields.update(changes)
    return RunRecord(**fields)


def error(message: str, kind="ValueError", traceback="") -> bytes:
    return json.dumps({"type": kind, "message": message, "traceback": traceback}).encode()


def log(*entries, run_id=RUN_ID) -> list[Event]:
    """Entries are (offset seconds, kind, op_id, name, data dict or None)."""
    events = [Event(run_id, 1, "run_created", None, "wf", None, T0)]
    for offset, kind, op_id, name, data in entries:
        payload = json.dumps(data).encode() if data is not None else None
        events.append(Event(run_id, len(events) + 1, kind, op_id, name, payload, T0 + offset))
    return events


def render(renderable, width: int, terminal: bool = True) -> str:
    console = Console(width=width, color_system="standard" if terminal else None,
                      force_terminal=terminal, highlight=False)
    with console.capture() as captured:
        console.print(renderable)
    return re.sub(r"\x1b\[[0-9;]*m", "", captured.get())


def retried_step_events():
    reset = {"type": "ConnectionError", "message": "gateway reset", "attempt": 1,
             "retry_at": T0 + 0.5}
    return log(
        (0.1, "step_retrying", "1", "charge", reset),
        (0.6, "step_completed", "1", "charge", "pay-1"),
        (0.7, "step_completed", "2", "ship", "ship-1"),
        (0.8, "run_completed", None, None, None),
    )


# --- narrow terminals -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 100])
def test_runs_keeps_ids_and_statuses_whole_and_the_note_in_a_narrow_terminal(width):
    records = [
        record(),
        record("wrun_01a203ffcd62a0a73c3d5f0b12f36a2b", "failed",
               error=error("gateway refused the card ending 4242 after three tries")),
        record("wrun_01a203ffcd62a0a73c3d5f0b12f36a2c", "suspended", wake_at=T0 + 3600),
    ]
    out = render(runs_table(records, T0 + 5), width)
    for r in records:
        assert r.id in out
    for status in ("completed", "failed", "suspended"):
        assert status in out
    words = " ".join(out.split())  # the note may wrap, or go on a line of its own
    assert "ValueError: gateway refused the card ending 4242 after three tries" in words
    assert "wakes in 59 m 55 s" in words
    assert all(len(line) <= width for line in out.splitlines())


def test_runs_gives_up_times_before_anything_else():
    records = [record(), record("wrun_01a203ffcd62a0a73c3d5f0b12f36a2b", "failed",
                                error=error("boom"))]
    wide = render(runs_table(records, T0 + 5), 200)
    assert "UPDATED" in wide and "3.0 s ago" in wide
    narrow = render(runs_table(records, T0 + 5), 80)
    assert "UPDATED" not in narrow and "process_order" in narrow
    assert "↳ ValueError: boom" in narrow  # under its row, whole


def test_piped_tables_are_not_wrapped():
    long_note = "x" * 150
    records = [record(status="failed", error=error(long_note))]
    out = render(runs_table(records, T0 + 5), 240, terminal=False)
    [header, row] = out.splitlines()
    assert header.split() == ["RUN", "ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED", "NOTE"]
    assert row.startswith(RUN_ID) and row.endswith("x…") and not row.endswith(" ")


@pytest.mark.parametrize("width", [60, 80])
def test_inspect_keeps_retry_errors_in_a_narrow_terminal(width):
    timeline = build_timeline(record(), retried_step_events(), T0 + 10)
    out = render(operations_table(timeline), width)
    assert "#1 ConnectionError: gateway reset" in " ".join(out.split())
    assert "completed" in out and "step charge" in out


def test_events_keep_their_detail_in_a_narrow_terminal():
    out = render(events_table(retried_step_events(), T0), 60)
    assert "attempt 1 failed: ConnectionError: gateway reset" in " ".join(out.split())
    assert "step_retrying" in out


def test_a_grid_folds_a_word_longer_than_its_column_and_never_cuts_whole_columns():
    grid = Grid([Column("ID"), Column("NOTE", wrap=True, min_width=10)],
                [["an-id-that-stays-whole", "y" * 25]])
    out = render(grid, 34)
    assert "an-id-that-stays-whole" in out
    assert "".join(line[24:].strip() for line in out.splitlines()[1:]) == "y" * 25
    assert wrap("ab cd " + "e" * 7, 4) == ["ab", "cd", "eeee", "eee"]


# --- inspect: errors, tracebacks, details ---------------------------------------------------


def test_inspect_shows_a_long_unbroken_error_whole_and_its_traceback():
    message = "x" * 1500 + "END"
    traceback = "Traceback (most recent call last):\n  File \"app.py\", line 3, in boom\n"
    failed = record(status="failed", error=error(message, traceback=traceback + message))
    timeline = build_timeline(failed, log((0.1, "run_failed", None, None, None)), T0 + 1)
    for width, terminal in ((80, True), (240, False)):
        out = render(run_header(failed, timeline, T0 + 1), width, terminal)
        assert "".join(out.split()).count("x" * 1500 + "END") == 1  # whole, and once
        assert "…" not in out
        assert 'File "app.py", line 3, in boom' in out
        assert "(the error above)" in out


def test_inspect_shows_the_failed_steps_traceback_when_the_run_recorded_none():
    failure = {"type": "KeyError", "message": "'sku'", "attempts": 1,
               "traceback": "Traceback (most recent call last):\n  File \"shop.py\", line 9"}
    failed = record(status="failed", error=error("'sku'", kind="KeyError"))
    events = log((0.1, "step_failed", "1", "reserve", failure),
                 (0.2, "run_failed", None, None, None))
    out = render(run_header(failed, build_timeline(failed, events, T0 + 1), T0 + 1), 100)
    assert 'File "shop.py", line 9' in out


def test_every_failed_attempt_is_numbered_alike_ones_together():
    busy = {"type": "durable.RetryableError", "message": "gateway busy"}
    events = log(
        (0.1, "step_retrying", "1", "charge", {**busy, "attempt": 1, "retry_at": T0 + 0.2}),
        (0.3, "step_retrying", "1", "charge", {**busy, "attempt": 2, "retry_at": T0 + 0.4}),
        (0.5, "step_retrying", "1", "charge", {**busy, "attempt": 3, "retry_at": T0 + 0.6}),
        (0.7, "step_failed", "1", "charge", {**busy, "attempts": 4}),
        (0.8, "run_failed", None, None, None),
    )
    timeline = build_timeline(record(status="failed"), events, T0 + 1)
    out = " ".join(render(operations_table(timeline), 200).split())
    assert "#1–4 durable.RetryableError: gateway busy" in out

    mixed = log(
        (0.1, "step_retrying", "1", "charge", {"type": "OSError", "message": "reset",
                                               "attempt": 1, "retry_at": T0 + 0.2}),
        (0.3, "step_failed", "1", "charge", {"type": "OSError", "message": "y" * 200,
                                             "attempts": 2}),
    )
    timeline = build_timeline(record(status="failed"), mixed, T0 + 1)
    out = " ".join(render(operations_table(timeline), 400).split())
    assert "#1 OSError: reset; #2 OSError: " + "y" * 70 in out
    assert "y" * 75 not in out  # each attempt's error is cut alike


def test_a_child_run_and_a_received_hook_show_as_completed():
    events = log(
        (0.1, "child_started", "1", "child_sum", {"run_id": f"{RUN_ID}.1", "workflow": "c"}),
        (0.2, "hook_received", "1", f"child:{RUN_ID}.1", {"status": "completed"}),
        (0.3, "child_started", "2", "child_sum", {"run_id": f"{RUN_ID}.2", "workflow": "c"}),
        (0.4, "hook_received", "2", f"child:{RUN_ID}.2", {"status": "failed"}),
        (0.5, "hook_created", "3", "hook", {"token": "approve:1"}),
        (0.6, "hook_received", "3", "approve:1", {"ok": True}),
        (0.7, "hook_disposed", "3", "hook", None),
    )
    ops = build_timeline(record(), events, T0 + 1).operations
    assert [(op.kind, op.status) for op in ops] == [
        ("child", "completed"), ("child", "failed"), ("hook", "completed")]
    out = render(operations_table(build_timeline(record(), events, T0 + 1)), 200)
    assert f"run {RUN_ID}.1" in out
    assert "received" not in out and "disposed" not in out


# --- what suspended runs wait for -----------------------------------------------------------


def test_runs_says_what_a_suspended_run_waits_for():
    now = T0 + 10
    parent = record("parent", "suspended", wake_at=now + 54.8)
    waiting = record("approval", "suspended", wake_at=now + 3589)
    sleeping = record("sleeper", "suspended", wake_at=now + 60)
    due = record("due", "suspended", wake_at=now - 1.4)
    logs = {
        "parent": log((0.1, "child_started", "1", "c", {"run_id": "parent.1", "workflow": "c"}),
                      (0.2, "child_started", "2", "c", {"run_id": "parent.2", "workflow": "c"}),
                      run_id="parent"),
        "approval": log((0.1, "hook_created", "1", "hook",
                         {"token": "approve:42", "timeout_at": now + 3589}), run_id="approval"),
        "sleeper": log((0.1, "sleep_started", "1", "sleep", {"wake_at": now + 60}),
                       run_id="sleeper"),
        "due": log((0.1, "hook_created", "1", "hook", {"token": "late:1"}), run_id="due"),
    }
    records = [parent, waiting, sleeping, due]
    waits = {r.id: open_waits(r, logs[r.id]) for r in records}
    out = " ".join(render(runs_table(records, now, waits), 240).split())
    assert "waiting for child run parent.2 (and 1 more wait)" in out
    assert "waiting for hook approve:42, times out in 59 m 49 s" in out
    assert "wakes in 1 m 00 s" in out
    assert "due 1.4 s ago: waiting for a worker" in out and "late:1" not in out
    assert "wakes in 54.8 s" not in out


def note_of(run: RunRecord, *entries) -> str:
    waits = {run.id: open_waits(run, log(*entries, run_id=run.id))}
    row = render(runs_table([run], run.created_at + 10, waits), 240).splitlines()[1]
    return " ".join(row.partition(" ago ")[2].split())  # what follows "UPDATED 8.0 s ago"


def test_a_runs_note_names_the_latest_wait_in_its_log_not_every_live_hook():
    run = record("parent", "suspended", wake_at=None)
    child_done = ((0.1, "child_started", "1", "kid", {"run_id": "parent.1", "workflow": "kid"}),
                  (0.2, "hook_received", "1", "child:parent.1", {"status": "completed"}))
    hook = (0.3, "hook_created", "2", "hook", {"token": "note-1", "timeout_at": None})
    # The child's hook stays live after its end: the run now waits on the hook it made since.
    assert note_of(run, *child_done, hook) == "waiting for hook note-1"
    # A hook whose payload it took, then another: the new one, and only it.
    took = ((0.1, "hook_created", "1", "hook", {"token": "first"}),
            (0.2, "hook_received", "1", "first", {"ok": True}))
    assert note_of(run, *took, hook) == "waiting for hook note-1"
    # A hook that had a payload and is still the latest wait: a stream waiting for the next.
    assert note_of(run, *took) == "waiting for hook first"
    # A sleep after a hook's payload: the sleep.
    sleeping = record("parent", "suspended", wake_at=T0 + 3600)
    nap = (0.3, "sleep_started", "2", "sleep", {"wake_at": T0 + 3600})
    assert note_of(sleeping, *took, nap) == "wakes in 59 m 50 s"


# --- long runs ------------------------------------------------------------------------------


def many_steps(n: int, failing: int | None = None) -> list[Event]:
    entries = []
    for i in range(1, n + 1):
        if i == failing:
            entries.append((i * 0.001, "step_retrying", str(i), "inc",
                            {"type": "OSError", "message": "once", "attempt": 1,
                             "retry_at": T0 + i * 0.001}))
        entries.append((i * 0.001, "step_completed", str(i), "inc", i))
    return log(*entries)


def test_a_long_run_shows_its_first_last_and_retried_operations():
    timeline = build_timeline(record(), many_steps(1000, failing=500), T0 + 10)
    out = render(operations_table(timeline), 120)
    rows = [line.split()[0] for line in out.splitlines()[1:] if line.strip()[:1].isdigit()]
    assert rows == [str(i) for i in (*range(1, 21), 500, *range(981, 1001))]
    assert "⋯ 479 more operations (--all shows every one)" in out
    assert "⋯ 480 more operations" in out
    assert len(render(operations_table(timeline, None), 120).splitlines()) == 1001


def test_a_long_runs_timeline_has_a_row_per_step_and_place():
    timeline = build_timeline(record(), many_steps(1000), T0 + 10)
    out = render(timeline_chart(timeline, 120), 120)
    assert "1…1000 inc ×1,000" in out
    assert len(out.splitlines()) == 3  # the row, the axis, the note
    assert len(render(timeline_chart(timeline, 120, None), 120).splitlines()) == 1001


def test_rendering_ten_thousand_events_piped_is_quick():
    events = many_steps(10_000)
    started = time.perf_counter()
    out = render(events_table(events, T0), 240, terminal=False)
    assert len(out.splitlines()) == 10_002
    assert time.perf_counter() - started < 3  # rich's Table took about 10 s


def test_a_running_run_whose_lease_lapsed_says_so_not_on_its_dead_worker():
    live = record("wrun_live", "running", lease_owner="vm:1:aa", lease_expires_at=T0 + 60)
    lapsed = record("wrun_lapsed", "running", lease_owner="vm:2:bb", lease_expires_at=T0 - 30)
    out = render(runs_table([live, lapsed], T0 + 5), 240)
    assert "on vm:1:aa" in out
    assert "lease of vm:2:bb lapsed" in out and "a worker takes it over" in out
    assert "on vm:2:bb" not in out


def test_a_running_run_of_a_process_that_exited_here_says_it_is_taken_over_at_once():
    owner = exited_owner("cc")
    orphan = record("wrun_orphan", "running", lease_owner=owner, lease_expires_at=T0 + 60)
    out = render(runs_table([orphan], T0 + 5), 400)
    assert "has exited: a worker on this host takes it over at once" in out, out
    live = record("wrun_live", "running", lease_owner="vm:1:aa", lease_expires_at=T0 + 60)
    assert "its lease lapses in 55" in render(runs_table([live], T0 + 5), 400)
