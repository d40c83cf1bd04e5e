"""What `durable runs`, `inspect` and `events` print in a real terminal, and for long runs."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios

import pytest

from tests.cli.conftest import ROOT, Cli

WORKLOAD = "tests.cli.cli_workload"


def in_terminal(cli: Cli, *args: str, columns: int) -> str:
    """Run `durable ARGS` with its output on a pseudo-terminal this many columns wide."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**cli.env, "COLUMNS": str(columns), "LINES": "40", "NO_COLOR": "1"}
    proc = subprocess.Popen([cli.script, *args], cwd=ROOT, env=env, stdin=follower,
                            stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, out
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode()).replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [60, 80])
def test_runs_in_a_narrow_terminal_keeps_ids_statuses_and_errors(cli, columns):
    failed = cli("start", f"{WORKLOAD}:doomed", '["card declined by the issuing bank"]',
                 "--wait", ok=False).stdout.split()[0]
    done = cli("start", f"{WORKLOAD}:greet", '["ada"]', "--wait").stdout.split()[0]
    out = in_terminal(cli, "runs", columns=columns)
    assert failed in out and done in out  # whole, as `inspect`/`cancel` need them
    assert re.search(rf"{done}\s.*\bcompleted\b", out)
    assert re.search(rf"{failed}\s.*\bfailed\b", out)
    assert "FatalError: card declined by the issuing bank" in " ".join(out.split())
    assert all(len(line) <= columns for line in out.splitlines())


def test_inspect_in_a_narrow_terminal_keeps_the_retry_errors(cli):
    cli("start", f"{WORKLOAD}:flaky", '["x"]', "--wait", "--run-id", "flaky-1")
    out = in_terminal(cli, "inspect", "flaky-1", columns=60)
    assert "#1–2 ConnectionError: x: try again" in " ".join(out.split())
    assert "completed" in out


def test_inspect_shows_a_long_error_whole_and_the_traceback(cli):
    cli("start", f"{WORKLOAD}:blow_up", "[1500]", "--wait", "--run-id", "boom", ok=False)
    out = cli("inspect", "boom").stdout
    assert "".join(out.split()).count("FatalError:" + "x" * 1500) == 1
    assert "traceback  Traceback (most recent call last):" in out
    assert "in explode" in out
