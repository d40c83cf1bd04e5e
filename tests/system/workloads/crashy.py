"""A 20-step workflow whose steps leave a durable trace, for the crash tests.

Every attempt of a step appends ``"{run_id} {step_index} {pid}\\n"`` to the file named by
``CRASHY_EFFECTS`` and fsyncs it, then sleeps a few random milliseconds so that a SIGKILL often
lands between the side effect and the commit of the step's result. Just before returning it
appends the same line to ``CRASHY_EFFECTS + ".returned"``.

Run as a script it is a driver: ``python -m tests.system.workloads.crashy run RUN_ID SALT``
executes one run in this process only (no embedded worker, so it touches no other run) and prints
``ready`` just before it starts.
"""

from __future__ import annotations

import os
import random
import sys
import time

import durable

STEPS = 20


def _append(path: str, line: str, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


@durable.step(name="crashy_step")
def crashy_step(index: int, salt: str) -> str:
    line = f"{durable.step_info().run_id} {index} {os.getpid()}\n"
    _append(os.environ["CRASHY_EFFECTS"], line, sync=True)
    time.sleep(random.uniform(0.0005, 0.005))
    # Not a side effect: tells the test that the step body returned (a kill after this line and
    # before the result is durable landed mid-commit). The page cache survives SIGKILL.
    _append(os.environ["CRASHY_EFFECTS"] + ".returned", line, sync=False)
    return f"{salt}:{index}"


@durable.workflow(name="crashy")
def crashy(salt: str, steps: int = STEPS) -> list[str]:
    return [crashy_step(i, salt) for i in range(steps)]


def expected(salt: str, steps: int = STEPS) -> list[str]:
    return [f"{salt}:{i}" for i in range(steps)]


def main(argv: list[str]) -> int:
    command, run_id, salt = argv
    if command != "run":
        raise SystemExit(f"unknown command {command!r}")
    durable.configure(worker=False, lease_ttl=2.0)
    print("ready", flush=True)
    result = crashy.with_options(run_id=run_id)(salt)
    print("done" if result == expected(salt) else f"wrong result {result!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
