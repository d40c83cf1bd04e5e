"""`durable start --wait` executes the run it started (and its children), and no other run."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli.background import Running, wait_for_status

WORKLOAD = "tests.cli.cli_workload"


def test_start_wait_leaves_other_pending_runs_to_workers(cli):
    others = [cli.start("nap", '["1h"]'), cli.start("crawl", "[2]")]
    proc = cli("start", f"{WORKLOAD}:greet", '["ada"]', "--wait")
    assert json.loads(proc.stdout.splitlines()[1]) == {"greeting": "hello ada!"}
    for run_id in others:  # not executed here: pending, with only their creation recorded
        assert cli.json("inspect", run_id)["run"]["status"] == "pending"
        assert [e["kind"] for e in cli.json("events", run_id)["events"]] == ["run_created"]


def test_start_wait_executes_the_child_runs_of_its_run(cli):
    proc = cli("start", f"{WORKLOAD}:family", '["kid"]', "--wait", "--run-id", "fam")
    assert json.loads(proc.stdout.splitlines()[1]) == {"greeting": "hello kid!"}
    assert cli.json("inspect", "fam.1")["run"]["status"] == "completed"


@pytest.mark.timeout(60)
def test_start_wait_says_what_a_suspended_run_waits_for_and_continues_it_when_due(cli):
    # A 6 s sleep suspends the run (sleeps over 5 s do); this process continues it when due.
    proc = cli("start", f"{WORKLOAD}:nap", '["6s"]', "--wait", timeout=60)
    run_id, result = proc.stdout.splitlines()
    assert json.loads(result) == "rested"
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"run {run_id} is suspended until ")
    assert line.endswith(
        "; waiting here to continue it (Ctrl-C leaves it to a worker: durable worker "
        f"{WORKLOAD})"
    )


@pytest.mark.timeout(60)
def test_start_wait_continues_a_run_when_its_hook_is_resumed(cli):
    with Running(cli, "start", f"{WORKLOAD}:approval", '["ok:1"]', "--wait") as waiting:
        line = waiting.wait_for("waiting on hook 'ok:1'")
        assert "`durable resume ok:1 PAYLOAD` resumes it" in line and "Ctrl-C leaves it" in line
        cli("resume", "ok:1", '{"text": "hello"}')
        code, out, err = waiting.finish()
        assert code == 0, err
        assert out.splitlines()[1] == "5"


@pytest.mark.timeout(60)
def test_ctrl_c_during_start_wait_leaves_the_run_to_a_worker(cli):
    with Running(cli, "start", f"{WORKLOAD}:nap", '["1h"]', "--wait", "--run-id", "zz") as waiting:
        wait_for_status(cli, "zz", "suspended")
        waiting.interrupt()
        code, out, err = waiting.finish()
        assert code == 130
        assert out == "zz\n"
        said = err.splitlines()[-1]  # (after "run zz is suspended until", if that took 3 s)
        assert said.startswith("interrupted: run zz stays suspended until "), err
        assert said.endswith(f"; a worker continues it (durable worker {WORKLOAD})"), err
        assert "Aborted" not in err and "Traceback" not in err


@pytest.mark.timeout(60)
def test_ctrl_c_twice_during_a_step_of_start_wait_stops_at_once(cli):
    command = ("start", f"{WORKLOAD}:crawl", "[60]", "--wait", "--run-id", "slow")
    with Running(cli, *command) as waiting:
        wait_for_status(cli, "slow", "running")
        time.sleep(0.5)  # the step has started
        waiting.interrupt()
        said = waiting.wait_for("interrupted: waiting for slow")
        assert "(crawl, step 'dawdle') to reach a durable point (Ctrl-C again to stop at " \
            "once" in said
        started = time.monotonic()
        waiting.interrupt()
        code, _, err = waiting.finish()
        assert code == 130 and time.monotonic() - started < 10
        assert "stopped at once (second Ctrl-C), leaving 1 run mid-step: slow (crawl" in err
        assert "running again only the steps that were in flight" in err
        assert "Traceback" not in err
        assert cli.json("inspect", "slow")["run"]["status"] == "running"  # until taken over


def test_timeout_without_wait_is_refused(cli):
    proc = cli("start", f"{WORKLOAD}:greet", '["a"]', "--timeout", "5", ok=False)
    assert proc.returncode == 2
    assert "Error: --timeout is how long --wait waits for the run: add --wait" in proc.stderr
    cli("world", "info")
    assert cli.json("runs")["runs"] == []  # nothing was started
