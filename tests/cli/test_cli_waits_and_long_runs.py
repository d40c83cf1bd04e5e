"""`durable runs` says what suspended runs wait for; `inspect --all` shows every operation."""

from __future__ import annotations

import re
import subprocess
import time

from tests.cli.background import wait_for_status
from tests.cli.conftest import ROOT

MINE = "tests.cli.inspect_workload"


def test_runs_says_which_hook_or_child_run_a_run_waits_for(cli):
    parent = cli("start", f"{MINE}:waits_for_child").stdout.split()[0]
    hooked = cli("start", f"{MINE}:waits_for_hook", '["sign-off:7"]').stdout.split()[0]
    worker = subprocess.Popen([cli.script, "worker", MINE, "--poll-interval", "0.05"], cwd=ROOT,
                              env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while {r["status"] for r in cli.json("runs")["runs"]} != {"suspended"}:
            assert time.monotonic() < deadline, cli.json("runs")
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    rows = {line.split()[0]: line for line in cli("runs").stdout.splitlines()[1:]}
    assert f"waiting for child run {parent}." in rows[parent]
    # A day less the time since the hook's creation: rounded up to "1 d" within half a second.
    assert re.search(r"waiting for hook sign-off:7, times out in (23 h 59 m|1 d)$",
                     rows[hooked].rstrip()), rows[hooked]
    # An hour less the time since the sleep began: "1 h 00 m" within half a second of it.
    napping = rows[next(r for r in rows if r.startswith(parent + "."))]
    assert re.search(r"wakes in (59 m|1 h 00 m)", napping), napping
    inspected = cli("inspect", parent).stdout
    assert f"waiting   for child run {parent}." in inspected


def test_runs_says_a_parent_waits_on_its_hook_once_its_child_run_ended(cli):
    parent = cli("start", f"{MINE}:child_then_hook", '["note:1"]').stdout.split()[0]
    worker = subprocess.Popen([cli.script, "worker", MINE, "--poll-interval", "0.05"], cwd=ROOT,
                              env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while [h["token"] for h in cli.json("hooks")["hooks"]] != ["note:1"]:
            assert time.monotonic() < deadline, cli.json("runs")
            time.sleep(0.2)
        wait_for_status(cli, parent, "suspended")
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    rows = {line.split()[0]: line for line in cli("runs").stdout.splitlines()[1:]}
    assert "completed" in rows[f"{parent}.1"]
    assert rows[parent].rstrip().endswith(" waiting for hook note:1"), rows[parent]


def test_inspecting_a_long_run_shows_its_ends_and_all_of_it_on_request(cli):
    cli("start", f"{MINE}:many", "[3000]", "--wait", "--run-id", "long")
    out = cli("inspect", "long").stdout
    assert len(out.splitlines()) < 80
    assert "⋯ 2,960 more operations (--all shows every one)" in out
    assert "1…3000 inc ×3,000" in out
    every = cli("inspect", "long", "--all").stdout
    ops = [line for line in every.splitlines() if re.match(r"\s*\d+\s+step inc", line)]
    assert len(ops) == 3000
    events = cli("events", "long").stdout.splitlines()
    assert len(events) == 3003 and "run_completed" in events[-1]
