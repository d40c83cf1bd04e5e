"""Helpers for system tests: real `durable` processes sharing one SQLite file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.world import World, open_world

ROOT = Path(__file__).resolve().parents[2]


def durable_command() -> list[str]:
    """The installed `durable` console script (or an equivalent if it is missing)."""
    venv_script = Path(sys.executable).parent / "durable"
    if venv_script.exists():
        return [str(venv_script)]
    found = shutil.which("durable")
    if found:
        return [found]
    return [sys.executable, "-c", "from cli import main; main()"]


def sqlite_url(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


def run_script(
    tmp_path: Path, name: str, text: str, url: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Write ``text`` to ``tmp_path/name`` and run it as a script on the world at ``url``."""
    script = tmp_path / name
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def env_for(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DURABLE_WORLD"] = url
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DURABLE_FORCE_REPLAY", None)
    env.update(extra)
    return env


class LineReader:
    """Collects a pipe's lines in a thread so a test can wait for one without blocking."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        finally:
            stream.close()
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    raise AssertionError(
                        "expected line not seen; output so far:\n" + "".join(self.lines)
                    )
                self._cond.wait(remaining)

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


class Proc:
    """A subprocess with its stdout and stderr collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.stdout = LineReader(self.popen.stdout)
        self.stderr = LineReader(self.popen.stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (SIGKILL if it does not stop in time)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.args} did not stop on SIGTERM:\n{self.stderr.text}"
            ) from None
        self.stdout.join()
        self.stderr.join()
        return code

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.args} did not finish in {timeout}s:\n{self.stdout.text}\n{self.stderr.text}"
            ) from None
        self.stdout.join()
        self.stderr.join()
        return code


class Procs:
    """Starts subprocesses and guarantees they are gone when the test ends."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(args, env)
        self.started.append(proc)
        return proc

    def worker(self, modules: list[str], env: dict[str, str], *options: str) -> Proc:
        return self.start([*durable_command(), "worker", *modules, *options], env)

    def python(self, module: str, args: list[str], env: dict[str, str]) -> Proc:
        return self.start([sys.executable, "-m", module, *args], env)

    def cleanup(self) -> None:
        for proc in self.started:
            proc.kill()
            proc.stdout.join()
            proc.stderr.join()


@contextmanager
def local_durable(url: str, **options: Any) -> Iterator[Runtime]:
    """Bind this (test) process's durable API to a world, without an embedded worker."""
    world: World = open_world(url)
    runtime = Runtime(world, RuntimeOptions(worker=False, **options))
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()
        world.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
