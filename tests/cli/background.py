"""Commands run in the background, to signal them and read what they say meanwhile."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

from tests.cli.conftest import ROOT, Cli


class Running:
    """A `durable` command (or ``program``) in the background, its stderr read line by line.

    Use it in a ``with`` block: the process is killed on the way out if it still runs.

    With ``merged``, its stdout is read as part of stderr (``finish`` then returns no stdout).
    """

    def __init__(
        self, cli: Cli, *args: str, program: str | None = None, merged: bool = False
    ) -> None:
        self.proc = subprocess.Popen(
            [program or cli.script, *args], cwd=ROOT, env=cli.env, text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        )
        self._said = self.proc.stdout if merged else self.proc.stderr
        self._out = None if merged else self.proc.stdout
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self._said is not None
        for line in self._said:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{text!r} not seen in stderr:\n{''.join(self.lines)}"
                self._cond.wait(remaining)

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Exit status, stdout and stderr once the process ends."""
        try:
            out = self._out.read() if self._out is not None else ""
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code, out, "".join(self.lines)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A test that failed before finish() must not leave the process running.
        if self.proc.poll() is None:
            self.proc.kill()
            self.finish()


def wait_for_status(cli: Cli, run_id: str, status: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc = cli("inspect", run_id, "--json", ok=None)  # (the world may not exist yet)
        seen = json.loads(proc.stdout)["run"]["status"] if proc.returncode == 0 else None
        if seen == status:
            return
        assert time.monotonic() < deadline, f"run {run_id} is {seen}, not {status}"
        time.sleep(0.2)
