"""Version 2 of the "versioned" workflow: same name, a "validate" step inserted after "reserve".

``python -m tests.system.workloads.versioned_v2 resume RUN_ID`` opens the world with its clock two
hours ahead (as if deployed after the v1 run's one-hour sleep), waits for the run to finish in this
process and prints its outcome as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time

import durable
from tests.system.workloads._effects import effect
from worlds.sqlite import SqliteWorld


@durable.step(name="reserve")
def reserve(order: str) -> str:
    effect("reserve")
    return f"reserved {order}"


@durable.step(name="validate")
def validate(order: str) -> str:
    effect("validate")
    return f"validated {order}"


@durable.step(name="charge")
def charge(order: str) -> str:
    effect("charge")
    return f"charged {order}"


@durable.step(name="ship")
def ship(order: str) -> str:
    effect("ship")
    return f"shipped {order}"


@durable.workflow(name="versioned")
def order_flow(order: str) -> list[str]:
    reserved = reserve(order)
    validated = validate(order)
    charged = charge(order)
    durable.sleep("1 hour")
    return [reserved, validated, charged, ship(order)]


def main(argv: list[str]) -> int:
    command, run_id = argv
    if command != "resume":
        raise SystemExit(f"unknown command {command!r}")
    world = SqliteWorld(os.environ["DURABLE_WORLD"], clock=lambda: time.time() + 7200)
    runtime = durable.configure(world, lease_ttl=2.0, poll_interval=0.05)
    # Run.result() only waits; nothing in this process has started a run, so start the embedded
    # worker explicitly (it claims the now-due run).
    runtime.ensure_worker()
    try:
        value = durable.get_run(run_id).result(timeout=30)
    except durable.WorkflowFailed as exc:
        outcome = {
            "status": "failed",
            "error_type": exc.error_type,
            "error_message": exc.error_message,
            "cause": type(exc.cause).__name__,
        }
    else:
        outcome = {"status": "completed", "value": value}
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
