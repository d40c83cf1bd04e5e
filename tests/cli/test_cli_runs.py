"""`durable start / runs / inspect / events / cancel / world info / gc` in real subprocesses."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

import durable
from tests.cli.background import Running, wait_for_status
from tests.cli.conftest import ROOT

WORKLOAD = "tests.cli.cli_workload"


def test_start_records_a_pending_run_that_runs_lists(cli):
    proc = cli("start", f"{WORKLOAD}:greet", '["ada"]')
    run_id = proc.stdout.strip()
    assert run_id.startswith("wrun_")
    assert "durable worker tests.cli.cli_workload" in proc.stderr

    listed = cli.json("runs")
    assert listed["world"] == cli.url
    [run] = listed["runs"]
    assert run["id"] == run_id
    assert run["workflow"] == "greet"
    assert run["status"] == "pending"  # no worker: `start` without --wait executes nothing
    assert set(run) >= {"created_at", "updated_at", "wake_at", "error", "cancel_requested"}

    table = cli("runs").stdout
    assert run_id in table and "pending" in table and "waiting for a worker" in table
    assert cli.json("runs", "--status", "completed")["runs"] == []
    assert cli.json("runs", "--workflow", "greet", "--limit", "1")["runs"][0]["id"] == run_id


def test_start_refuses_a_run_id_no_world_could_store_alike(cli):
    proc = cli("start", f"{WORKLOAD}:greet", '["ada"]', "--run-id", "x" * 300, ok=False)
    assert proc.stderr.strip() == (
        "Error: --run-id: run_id is 300 characters long; the most is 256: use a shorter one "
        "(a hash of a long business key, say)"
    )
    assert cli.json("runs")["runs"] == []


def test_start_wait_executes_and_prints_the_result(cli):
    proc = cli("start", f"{WORKLOAD}:greet", '{"name": "bo", "punctuation": "?"}', "--wait")
    run_id, result = proc.stdout.splitlines()
    assert run_id.startswith("wrun_")
    assert json.loads(result) == {"greeting": "hello bo?"}

    doc = cli.json("start", f"{WORKLOAD}:greet", '["cy"]', "--wait", "--run-id", "greet-cy")
    assert doc["id"] == "greet-cy"
    assert doc["status"] == "completed"
    assert doc["result"] == {"greeting": "hello cy!"}
    assert doc["input"] == {"args": ["cy"], "kwargs": {}}
    assert doc["created"] is True

    again = cli.json("start", f"{WORKLOAD}:greet", '["zz"]', "--run-id", "greet-cy")
    assert again["created"] is False  # the same id returns the existing run
    assert again["status"] == "completed"
    assert len(cli.json("runs")["runs"]) == 2


def test_inspect_shows_steps_attempts_durations_and_sleeps(cli):
    cli("start", f"{WORKLOAD}:flaky", '["x"]', "--wait", "--run-id", "flaky-1")
    doc = cli.json("inspect", "flaky-1")
    assert doc["run"]["status"] == "completed"
    assert doc["run"]["result"] == ["x ok", "hello a", "hello b"]
    ops = {op["op_id"]: op for op in doc["operations"]}
    assert list(ops) == ["1", "2", "3.0.1", "3.1.1"]

    wobbly = ops["1"]
    assert (wobbly["kind"], wobbly["name"], wobbly["status"]) == ("step", "wobbly", "completed")
    assert wobbly["attempts"] == 3
    errors = [a["error"] for a in wobbly["attempt_log"]]
    assert errors[:2] == [{"type": "ConnectionError", "message": "x: try again"}] * 2
    assert errors[2] is None
    assert wobbly["duration_seconds"] >= 0.1  # two retry delays of 0.05 s and 0.1 s

    sleep = ops["2"]
    assert (sleep["kind"], sleep["status"]) == ("sleep", "completed")
    assert sleep["wake_at"] is not None
    # Measured from when the sleep was recorded (slightly after it began) to its wake-up time.
    assert 0.0 < sleep["duration_seconds"] <= 0.06

    for op_id in ("3.0.1", "3.1.1"):  # parallel branches start when the sleep ends
        assert ops[op_id]["started_at"] == sleep["wake_at"]
        assert ops[op_id]["duration_seconds"] >= 0
    assert doc["duration_seconds"] >= 0.15

    table = cli("inspect", "flaky-1").stdout
    for text in ("flaky-1", "completed", "step wobbly", "ConnectionError", "sleep", "timeline"):
        assert text in table


def test_events_prints_the_log(cli):
    cli("start", f"{WORKLOAD}:flaky", '["y"]', "--wait", "--run-id", "flaky-2")
    doc = cli.json("events", "flaky-2")
    assert doc["run_id"] == "flaky-2"
    kinds = [e["kind"] for e in doc["events"]]
    assert kinds == [
        "run_created",
        "step_retrying",
        "step_retrying",
        "step_completed",
        "sleep_started",
        "step_completed",
        "step_completed",
        "run_completed",
    ]
    first_step = doc["events"][3]
    assert first_step["data"] == "y ok" and first_step["data_encoding"] == "json"
    assert [e["seq"] for e in doc["events"]] == list(range(1, 9))
    assert [e["seq"] for e in cli.json("events", "flaky-2", "--after", "6")["events"]] == [7, 8]

    table = cli("events", "flaky-2").stdout
    assert "step_retrying" in table and "attempt 1 failed: ConnectionError" in table


def test_failed_run_is_listed_with_its_error(cli):
    proc = cli("start", f"{WORKLOAD}:doomed", '["card declined"]', "--wait", ok=False)
    run_id = proc.stdout.strip()
    [line] = proc.stderr.strip().splitlines()
    assert run_id in line and "FatalError: card declined" in line

    [run] = cli.json("runs", "--status", "failed")["runs"]
    assert run["id"] == run_id
    assert run["error"]["type"].endswith("FatalError")
    assert run["error"]["message"] == "card declined"
    inspected = cli.json("inspect", run_id)
    assert inspected["operations"][0]["status"] == "failed"
    assert inspected["run"]["error"]["traceback"]


def test_a_run_timeout_cancels_a_run_still_asleep_at_its_deadline(cli):
    started = cli("start", f"{WORKLOAD}:nap", '["1h"]', "--run-timeout", "1s", "--wait",
                  ok=False)
    run_id = started.stdout.strip()
    assert f"Error: run {run_id} timed out: it was still unfinished at its deadline" in (
        started.stderr
    )
    doc = cli.json("inspect", run_id)
    assert doc["run"]["status"] == "cancelled"
    assert doc["run"]["error"]["type"] == "WorkflowTimedOut"
    assert doc["run"]["input"] == {"args": ["1h"], "kwargs": {}} and doc["run"]["deadline"]
    assert "deadline  " in cli("inspect", run_id).stdout
    last = cli("events", run_id).stdout.splitlines()[-1]
    assert "run_cancelled" in last and "timed out: still unfinished at its deadline" in last
    [row] = [line for line in cli("runs").stdout.splitlines() if line.startswith(run_id)]
    assert row.rstrip().endswith(" timed out"), row
    refused = cli("start", f"{WORKLOAD}:nap", '["1h"]', "--run-timeout", "soon", ok=False)
    assert refused.stderr.startswith('Error: --run-timeout: invalid duration "soon"')


def test_a_cancelled_run_whose_undo_failed_says_so(cli):
    started = cli("start", f"{WORKLOAD}:charge_then_nap", '["1h"]', "--run-timeout", "1s",
                  "--wait", ok=False)
    run_id = started.stdout.strip()
    assert "undo steps failed while it compensated" in started.stderr
    assert "refuse: FatalError: refund api down" in started.stderr
    [row] = [line for line in cli("runs").stdout.splitlines() if line.startswith(run_id)]
    assert row.rstrip().endswith(" timed out; undo steps failed"), row
    lines = cli("events", run_id).stdout.splitlines()
    assert "run_cancelled" in lines[-1] and "undo steps failed: refuse: FatalError" in lines[-1]
    assert any("stops here: its cancellation was requested" in line for line in lines), lines


def test_events_show_where_a_run_took_a_patched_path(cli):
    started = cli("start", f"{WORKLOAD}:greet_patched", '["ada"]', "--wait")
    run_id, output = started.stdout.split("\n", 1)
    assert output.strip() == '"hello ADA"'
    lines = cli("events", run_id).stdout.splitlines()
    [marker] = [line for line in lines if "value_recorded" in line]
    assert "patched:shout" in marker and "takes the patched code path here" in marker


def test_cancel_a_pending_and_a_suspended_run(cli):
    pending = cli.start("nap", '["1h"]')
    out = cli("cancel", pending).stdout
    assert f"cancelled run {pending}" in out
    assert cli.json("inspect", pending)["run"]["status"] == "cancelled"

    # --wait executes the first step, the long sleep suspends the run, and --timeout gives up.
    proc = cli("start", f"{WORKLOAD}:nap", '["1h"]', "--wait", "--timeout", "0.3", ok=False)
    suspended = proc.stdout.strip()
    assert "still suspended" in proc.stderr
    doc = cli.json("inspect", suspended)
    assert doc["run"]["status"] == "suspended"
    assert doc["operations"][1]["status"] == "sleeping"
    # With --json a script still gets the run's document (and a non-zero exit).
    timed_out = cli("start", f"{WORKLOAD}:nap", '["1h"]', "--wait", "--timeout", "0.3", "--json",
                    ok=False)
    assert json.loads(timed_out.stdout)["status"] == "suspended"
    assert "still suspended" in timed_out.stderr

    # It has history: without a worker for its workflow, cancelling waits for one to run its
    # undo steps; --force cancels it now.
    requested = cli.json("cancel", suspended)
    assert (requested["outcome"], requested["cancel_requested"]) == ("requested", True)
    cancelled = cli.json("cancel", suspended, "--force")
    assert (cancelled["outcome"], cancelled["status"]) == ("cancelled", "cancelled")
    again = cli("cancel", suspended).stdout
    assert "already cancelled" in again
    assert cli.json("runs", "--status", "cancelled")["runs"][0]["id"] in (pending, suspended)


@pytest.mark.timeout(90)
def test_cancel_force_of_a_run_a_live_worker_holds_says_that_worker_stops_it(cli):
    cli.start("crawl", "[6]", "--run-id", "held")  # long enough for two CLI calls
    with Running(cli, "worker", WORKLOAD, "--poll-interval", "0.05"):
        wait_for_status(cli, "held", "running")
        holder = cli.json("inspect", "held")["run"]["lease_owner"]
        said = " ".join(cli("cancel", "held", "--force").stdout.split())
        # Its last step is running: cancellation, final once requested, ends it cancelled.
        wait_for_status(cli, "held", "cancelled")
    assert said == (
        f"run held is held by live worker {holder}, so --force cannot cancel it at once: asked "
        f"it to stop instead; {holder} cancels it at its next durable point (its next step, "
        "sleep, hook or its outcome), after its undo steps"
    )
    forced = " ".join(cli("cancel", "--help").stdout.split())
    assert "if no live worker holds it" in forced and "at once, without its undo steps" in forced


def test_world_info_says_which_world_where_and_how_many_runs(cli, tmp_path):
    cli.start("greet", '["a"]')
    cli("start", f"{WORKLOAD}:greet", '["b"]', "--wait")
    info = cli.json("world", "info")
    assert info["url"] == cli.url
    assert info["backend"] == "sqlite"
    assert info["path"] == str(tmp_path / "world.db")
    assert info["size_bytes"] > 0
    assert info["runs"]["pending"] + info["runs"]["completed"] == 2
    assert info["total_runs"] == 2
    assert set(info["runs"]) >= {"pending", "running", "suspended", "completed", "failed"}

    table = cli("world", "info").stdout
    assert cli.url in table and str(tmp_path / "world.db") in table

    other = tmp_path / "other.db"
    elsewhere = cli.json("--world", f"sqlite:///{other}", "world", "info")
    assert elsewhere["path"] == str(other) and elsewhere["total_runs"] == 0


def test_start_gives_json_arguments_the_annotated_types(cli):
    member = '[{"name": "ada", "since": "2024-03-01"}]'
    proc = cli("start", f"{WORKLOAD}:welcome", member, "--wait", "--json")
    assert json.loads(proc.stdout)["result"] == "welcome ada, member since 2024"
    bad = cli("start", f"{WORKLOAD}:welcome", '[{"name": "ada"}]', ok=False)
    assert "ARGS of welcome: argument 'member' does not fit its annotation" in bad.stderr
    assert "since" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert cli.json("runs")["runs"][0]["status"] == "completed"  # the refused one never recorded
    misspelt = cli("start", f"{WORKLOAD}:welcome", '{"membr": {"name": "ada"}}', ok=False)
    assert misspelt.stderr.strip() == (
        "Error: ARGS do not match welcome(member): no parameter takes the keyword argument "
        "'membr'"
    )
    plain = cli("start", f"{WORKLOAD}:greet", "[42]", ok=False)
    assert plain.stderr.strip().endswith("ARGS of greet: argument 'name' must be str, got int 42")
    assert len(cli.json("runs")["runs"]) == 1


@pytest.mark.timeout(60)
def test_start_wait_is_quiet_about_other_workflows_runs_but_a_worker_says_why(cli):
    other = cli("start", "tests.system.workloads.sleepy:sleepy", '["1s"]').stdout.split()[0]
    waited = cli("start", f"{WORKLOAD}:greet", '["a"]', "--wait")
    assert "has it registered" not in waited.stderr, waited.stderr
    with subprocess.Popen(
        [cli.script, "worker", WORKLOAD, "--poll-interval", "0.05"],
        cwd=ROOT,
        env=cli.env,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        assert worker.stderr is not None
        try:
            said = next(line for line in worker.stderr if "has it registered" in line)
        finally:  # also when the test times out, or leaving the block waits for the worker
            worker.kill()
    assert other in said and "'sleepy'" in said, said


def test_world_option_may_follow_the_command(cli, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    started = cli("start", f"{WORKLOAD}:greet", '["a"]', "--wait", "--world", other)
    run_id = started.stdout.split()[0]
    assert [r["id"] for r in cli.json("runs", "--world", other)["runs"]] == [run_id]
    assert cli.json("world", "info", "--world", other)["total_runs"] == 1
    untouched = cli("runs", ok=False)  # DURABLE_WORLD's world was left alone (not even made)
    assert untouched.stderr.startswith("Error: no world at ")
    assert "check --world or DURABLE_WORLD" in untouched.stderr
    # After the command it wins over the one before it.
    assert cli.json("--world", cli.url, "runs", "--world", other)["runs"][0]["id"] == run_id


def test_gc_deletes_finished_runs_older_than_a_duration(cli):
    cli("start", f"{WORKLOAD}:greet", '["a"]', "--wait")
    cli("start", f"{WORKLOAD}:doomed", '["no"]', "--wait", ok=False)
    pending = cli.start("greet", '["later"]')

    assert cli.json("gc", "--older-than", "30d")["deleted"] == 0
    assert "deleted 0 finished runs" in cli("gc", "--older-than", "30d").stdout
    doc = cli.json("gc", "--older-than", "0s")
    assert doc["deleted"] == 2 and doc["older_than_seconds"] == 0
    assert [r["id"] for r in cli.json("runs")["runs"]] == [pending]  # unfinished runs stay


def test_hooks_lists_what_runs_wait_on_from_outside_not_the_engines_child_hooks(cli):
    from durable.world import HookRecord, NewEvent, NewRun
    from worlds.sqlite import SqliteWorld

    with SqliteWorld(cli.url) as world:
        world.create_run(NewRun("parent", "wf", b"{}"), owner="me", lease_ttl=60)
        world.create_hook("me", HookRecord("approve:1", "parent", "1", 1.0),
                          NewEvent("hook_created", "1", "hook"))
        world.create_hook("me", HookRecord("child:parent.2", "parent", "2", 2.0),
                          NewEvent("child_started", "2", "kid"))
        # Its timeout passed while no worker ran the run: listed, but it takes no payload.
        world.create_hook("me", HookRecord("late:1", "parent", "3", 3.0, timeout_at=4.0),
                          NewEvent("hook_created", "3", "hook"))
    listed = cli.json("hooks")["hooks"]
    assert [(h["token"], h["timed_out"]) for h in listed] == [
        ("approve:1", False), ("late:1", True)
    ]
    table = cli("hooks").stdout
    assert "child:" not in table and "(passed: takes no payload)" in table
    late = cli("resume", "late:1", "{}", ok=False)
    assert "hook 'late:1' timed out at 1970-01-01T00:00:04+00:00" in late.stderr
    refused = cli("resume", "child:parent.2", "{}", ok=False)
    assert "is how a parent waits for its child run" in refused.stderr
    with SqliteWorld(cli.url) as world:  # nothing was delivered
        kinds = [e.kind for e in world.read_events("parent")]
    assert kinds == ["run_created", "hook_created", "child_started", "hook_created"]


@durable.workflow(name="cli_runs.two_approvals")
async def two_approvals(tag: str) -> list[str]:
    """Waits on two hooks at once (executed in the test's process)."""
    first = durable.create_hook(token=f"first:{tag}")
    second = durable.create_hook(token=f"second:{tag}")
    return list(await asyncio.gather(first, second))


def test_a_hook_that_had_its_payload_is_not_named_as_what_its_run_waits_on(cli):
    from durable._client import use_runtime
    from durable._runtime import Runtime, RuntimeOptions
    from durable.world import open_world
    from tests.system._support import wait_until

    runtime = Runtime(open_world(cli.url), RuntimeOptions(poll_interval=0.05))
    previous = use_runtime(runtime)
    try:
        run = two_approvals.start("x")
        wait_until(lambda: len(runtime.world.list_hooks(run.id)) == 2, 30, "both hooks")
        durable.resume_hook("second:x", "yes")
        wait_until(
            lambda: runtime.world.get_run(run.id).status == "suspended"
            and any(e.kind == "hook_received" for e in runtime.world.read_events(run.id))
            and runtime.world.get_run(run.id).wake_at is None,
            30,
            "the run to wait again",
        )
        [row] = [line for line in cli("runs").stdout.splitlines() if line.startswith(run.id)]
        assert "waiting for hook first:x" in row and "more wait" not in row, row
        listed = {h["token"]: h["received"] for h in cli.json("hooks")["hooks"]}
        assert listed == {"first:x": 0, "second:x": 1}
        inspected = cli("inspect", run.id).stdout
        assert "hook      first:x (waiting)" in inspected
        assert "hook      second:x (open, 1 payload received)" in inspected
        durable.resume_hook("first:x", "ok")
        assert run.result(timeout=30) == ["ok", "yes"]
    finally:
        use_runtime(previous)
        runtime.stop()
        runtime.world.close()


def test_a_reader_that_goes_away_ends_a_command_quietly(cli):
    # `head -1` leaves after the run id; the result printed once the run ends meets a closed pipe.
    proc = subprocess.run(
        f"{cli.script} start {WORKLOAD}:greet '[\"a\"]' --wait | head -1", shell=True,
        env=cli.env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.stdout.startswith("wrun_")
    assert proc.stderr == "", proc.stderr


def test_retry_every_failed_run_of_a_workflow(cli):
    doomed = [cli("start", f"{WORKLOAD}:doomed", f'["no {i}"]', "--wait", ok=False).stdout.strip()
              for i in range(3)]
    greeted = cli("start", f"{WORKLOAD}:greet", '["a"]', "--wait").stdout.splitlines()[0]
    out = cli("retry", "--failed", "--workflow", "doomed").stdout.splitlines()
    assert sorted(out) == sorted(f"retrying run {r}: pending for a worker of doomed"
                                 for r in doomed)
    assert {r["status"] for r in cli.json("runs", "--workflow", "doomed")["runs"]} == {"pending"}
    assert cli("retry", "--failed").stdout.strip() == "no failed runs to retry"
    mixed = cli("retry", doomed[0], greeted, "--json", ok=False)
    assert mixed.returncode == 1
    doc = json.loads(mixed.stdout)
    assert doc["retried"] == []  # the first is pending now: not failed any more
    assert [r["id"] for r in doc["refused"]] == [doomed[0], greeted]
    assert "only a failed run can be retried" in doc["refused"][1]["reason"]
    assert "give --failed" in cli("retry", ok=False).stderr


def test_retry_makes_a_failed_run_pending_for_a_worker(cli):
    proc = cli("start", f"{WORKLOAD}:doomed", '["card declined"]', "--wait", ok=False)
    run_id = proc.stdout.strip()
    out = cli("retry", run_id).stdout
    assert out.strip() == f"retrying run {run_id}: pending for a worker of doomed", out
    assert cli.json("inspect", run_id)["run"]["status"] == "pending"
    kinds = [e["kind"] for e in cli.json("events", run_id)["events"]]
    assert kinds[-2:] == ["run_failed", "run_retried"]
    last = cli("events", run_id).stdout.splitlines()[-1]
    assert "run_retried" in last and "FatalError: card declined" in last and "runs again" in last
    refused = cli("retry", "no-such-run", ok=False)
    assert "no run with id 'no-such-run'" in refused.stderr and "Traceback" not in refused.stderr
    greeted = cli("start", f"{WORKLOAD}:greet", '["a"]', "--wait").stdout.splitlines()[0]
    refused = cli("retry", greeted, ok=False)
    assert "is completed: only a failed run can be retried" in refused.stderr


def test_cancel_takes_many_runs_and_reports_the_ids_it_cannot_find(cli):
    first, second = cli.start("nap", '["1h"]'), cli.start("nap", '["1h"]')
    out = cli("cancel", first, "nope", second, ok=False)
    assert out.returncode == 1
    assert f"cancelled run {first}" in out.stdout and f"cancelled run {second}" in out.stdout
    assert "nope" in out.stderr
    lines = cli("cancel", first, second, "--json").stdout.splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["already_finished"] * 2
