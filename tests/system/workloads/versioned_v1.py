"""Version 1 of the "versioned" workflow: reserve, charge, sleep an hour, ship.

``python -m tests.system.workloads.versioned_v1 start ORDER`` starts a run in this process, waits
until it is suspended on its one-hour sleep, prints the run id and exits.
``python -m tests.system.workloads.versioned_v1 record ORDER`` only records a pending run.
"""

from __future__ import annotations

import sys
import time

import durable
from tests.system.workloads._effects import effect


@durable.step(name="reserve")
def reserve(order: str) -> str:
    effect("reserve")
    return f"reserved {order}"


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
    charged = charge(order)
    durable.sleep("1 hour")
    return [reserved, charged, ship(order)]


def main(argv: list[str]) -> int:
    command, order = argv
    if command == "record":
        durable.configure(worker=False)
        print(order_flow.with_options(execute=False).start(order).id, flush=True)
        return 0
    if command != "start":
        raise SystemExit(f"unknown command {command!r}")
    durable.configure(lease_ttl=2.0, poll_interval=0.05)
    run = order_flow.start(order)
    deadline = time.monotonic() + 30
    while run.status != "suspended":
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run.id} did not suspend: {run.status}")
        time.sleep(0.02)
    print(run.id, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
