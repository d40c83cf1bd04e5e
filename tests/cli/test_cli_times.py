"""Every table shows times one way (local, to the second); --json keeps ISO 8601 UTC."""

from __future__ import annotations

import re
from datetime import datetime

WORKLOAD = "tests.cli.cli_workload"
LOCAL = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def local(iso_time: str) -> str:
    return datetime.fromisoformat(iso_time).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def test_hooks_events_and_inspect_show_times_as_runs_does(cli):
    cli("start", f"{WORKLOAD}:approval", '["when:1"]', "--wait", "--timeout", "0.5",
        "--run-id", "waits", ok=False)
    cli("start", f"{WORKLOAD}:nap", '["1h"]', "--wait", "--timeout", "0.5",
        "--run-id", "naps", ok=False)
    [run] = [r for r in cli.json("runs")["runs"] if r["id"] == "waits"]
    assert local(run["created_at"]) in cli("runs").stdout

    [hook] = cli.json("hooks")["hooks"]
    assert hook["timeout_at"].endswith("+00:00")  # --json keeps ISO 8601 UTC
    [row] = [line for line in cli("hooks").stdout.splitlines() if "when:1" in line]
    assert LOCAL.findall(row) == [local(hook["created_at"]), local(hook["timeout_at"])]
    assert "T" not in row.split("when:1")[1].split("waits")[1]

    [created] = [line for line in cli("events", "waits").stdout.splitlines() if "hook_" in line]
    assert f"token when:1, times out {local(hook['timeout_at'])}" in created
    assert "timeout_at" not in created
    inspected = cli("inspect", "waits").stdout
    assert f"hook      when:1 (waiting, times out {local(hook['timeout_at'])})" in inspected

    [sleep] = [op for op in cli.json("inspect", "naps")["operations"] if op["kind"] == "sleep"]
    until = f"until {local(sleep['wake_at'])}"
    assert until in cli("events", "naps").stdout
    assert until in cli("inspect", "naps").stdout
