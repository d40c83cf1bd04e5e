"""`durable dev`: a worker with a live log of runs, stopped cleanly by a signal."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """Collects a process's output lines in a thread so the test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{text!r} not seen in:\n{''.join(self.lines)}"
                self._cond.wait(remaining)

    def join(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def _dev(cli, *modules: str) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(
        [cli.script, "dev", *modules],
        cwd=ROOT,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, Output(proc)


def test_dev_runs_workflows_and_shows_what_happens(cli):
    proc, out = _dev(cli, "tests.cli.cli_workload")
    try:
        out.wait_for("waiting for runs")
        flaky = cli.start("flaky", '["x"]')
        doomed = cli.start("doomed", '["nope"]')
        out.wait_for(f"{flaky}  ■ completed")
        out.wait_for(f"{doomed}  ■ failed")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.join()
    assert proc.stdout is not None
    proc.stdout.close()
    for expected in (
        f"{flaky}  ▶ started flaky",
        f"{flaky}  ↻ step wobbly",
        "attempt 1 failed: ConnectionError: x: try again",
        f"{flaky}  ✓ step wobbly",
        f"{flaky}  ☾ sleep",
        f"{doomed}  ✗ step refuse failed",
        "stopped",
    ):
        assert expected in text
    assert "Traceback" not in text
    assert cli.json("runs", "--status", "completed")["runs"][0]["id"] == flaky


def test_dev_shows_suspension_and_stops_on_sigterm(cli):
    proc, out = _dev(cli, "tests.cli.cli_workload")
    try:
        out.wait_for("waiting for runs")
        napper = cli.start("nap", '["1h"]')
        out.wait_for(f"{napper}  ☾ suspended")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.join()
    assert proc.stdout is not None
    proc.stdout.close()
    assert cli.json("inspect", napper)["run"]["status"] == "suspended"
