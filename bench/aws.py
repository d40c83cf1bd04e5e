"""AWS world benchmark: requests and estimated cost per step, and steps/s against moto.

Run it from the repository root (needs ``boto3`` and ``moto[server]``)::

    python -m bench.aws            # ~75 s; --quick (~45 s) for fewer runs

Two workflows, each of one step function ``work(i) -> i + 1``:

* sequential: 10 steps, one after another;
* map: ``durable.map(work, range(100))``, 100 steps as concurrent branches.

(a) Requests. Each workflow runs a few times on a fresh AWS world on a moto server, inline in the
    caller, with a ``Runtime`` whose embedded worker is on. botocore event hooks on the world's
    clients count every API call and HTTP attempt and estimate DynamoDB capacity from the
    requests' items (``bench/aws_support.py``). Requests are split by who makes them: the run's
    path (the caller and branch threads), and the embedded worker acting for the run afterwards
    (the "watch" message each inline run sends for its lease's expiry, ~31 s later: the bench
    waits for it; lease renewals if a run outlives a third of its lease). Printed per workflow:
    requests per run and per step by operation, DynamoDB write requests per step against the 1.5
    target, reads per step, SQS and S3 requests per run, and the estimated cost per million
    steps at on-demand prices. Then the same sequential workflow with larger inputs (the run
    record carries its input, and every step rewrites the run record), and an embedded worker
    polling an empty world with the default ``AwsConfig`` (on a moto server of its own).
(b) Throughput. steps/s of the same workflows on the moto server (each run on a fresh table,
    embedded worker off) and, as the peer measured in the same run, on the SQLite world (ratio
    aws/sqlite). moto on loopback is not AWS: it serves one request at a time, several ms each.

The worlds measured in (a) use the default ``AwsConfig`` except ``receive_wait=0``: moto serves
one request at a time, so a worker's long poll would stall the run's own requests there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import durable
from bench.aws_support import (
    ASSUMPTIONS,
    DDB_READS,
    DDB_WRITES,
    Meter,
    Setup,
    Tally,
    create_resources,
    create_table,
    delete_table,
    setup_clients,
    start_moto,
    stop_moto,
)
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / ".bench-tmp" / "aws"
WRITE_TARGET = 1.5
"""DynamoDB write requests per step the AWS world aims to stay under."""
MONTH = 30 * 86_400


@durable.step
def work(i: int) -> int:
    return i + 1


@durable.workflow(name="bench_aws_sequential")
def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total = work(i)
    return total


@durable.workflow(name="bench_aws_map")
def fan_out(n: int) -> int:
    return sum(durable.map(work, range(n)))


@durable.workflow(name="bench_aws_sequential_input")
def sequential_input(blob: str, n: int) -> int:
    total = 0
    for i in range(n):
        total = work(i)
    return total


INPUT_SIZES = (0, 8_000, 60_000)
"""Input sizes (bytes of a string argument) for the input-size section of (a)."""


@dataclass(frozen=True)
class Shape:
    """A workflow under test and the steps one run of it records."""

    key: str
    label: str
    flow: Any
    steps: int

    def run(self) -> None:
        result = self.flow(self.steps)
        expected = self.steps if self.flow is sequential else self.steps * (self.steps + 1) // 2
        if result != expected:
            raise RuntimeError(f"{self.key}: got {result!r}, expected {expected!r}")


SHAPES = (
    Shape("sequential", "sequential workflow, 10 steps", sequential, 10),
    Shape("map", "durable.map over 100 items (100 steps in branches)", fan_out, 100),
)


@contextlib.contextmanager
def installed(world: Any, worker: bool) -> Iterator[Runtime]:
    """A runtime on ``world`` as the process's runtime while the block runs."""
    runtime = Runtime(world, RuntimeOptions(worker=worker))
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()


# -- (a) requests ----------------------------------------------------------------------------


@dataclass
class Counted:
    """A workflow's metered runs on its own world, and the worker still draining its messages."""

    shape: Shape
    runs: int
    meter: Meter
    world: Any
    runtime: Runtime
    last_start: float
    path: Tally = dataclasses.field(default_factory=Tally)
    deferred: Tally = dataclasses.field(default_factory=Tally)

    @property
    def steps(self) -> int:
        return self.runs * self.shape.steps


def count_requests(setup: Setup, shape: Shape, runs: int) -> Counted:
    """Run ``shape`` ``runs`` times on a fresh metered world; its worker keeps running."""
    from worlds.aws import AwsWorld

    # No long polls here: moto serves one request at a time, so a worker's 1 s receive would
    # stall the run's own requests (on SQS it does not).
    config = create_resources(setup, f"bench-{shape.key}", receive_wait=0.0)
    world = AwsWorld(config=config)
    meter = Meter()
    meter.attach(world.clients.dynamodb, world.clients.sqs, world.clients.s3)
    _ = world.queue.url  # looked up once per process: not a per-run cost
    meter.reset()
    runtime = Runtime(world, RuntimeOptions())
    previous = use_runtime(runtime)
    last_start = time.monotonic()
    try:
        for _ in range(runs):
            last_start = time.monotonic()
            shape.run()
    except BaseException:
        runtime.stop()
        world.close()
        raise
    finally:
        use_runtime(previous)
    counted = Counted(shape, runs, meter, world, runtime, last_start)
    counted.path = meter.take("run")
    return counted


def drain(counted: Counted, timeout: float) -> None:
    """Wait until the worker has settled every message the runs sent, then stop it."""
    sent = counted.path.calls[("sqs", "SendMessage")]
    lease_ttl = counted.runtime.options.lease_ttl
    deadline = counted.last_start + lease_ttl + 1.0 + timeout
    while time.monotonic() < deadline:
        settled = counted.meter.take("deferred").calls[("sqs", "DeleteMessage")]
        if settled >= sent:
            break
        time.sleep(0.25)
    counted.runtime.stop()
    counted.deferred = counted.meter.take("deferred")
    counted.world.close()


def _ops(tally: Tally) -> list[tuple[str, int]]:
    return sorted(
        ((f"{svc} {op}", n) for (svc, op), n in tally.calls.items()), key=lambda x: (-x[1], x[0])
    )


def _print_ops(title: str, tally: Tally, runs: int, steps: int) -> None:
    print(f"  {title:<44} {'per run':>9} {'per step':>9}")
    for name, n in _ops(tally):
        print(f"    {name:<42} {n / runs:>9.2f} {n / steps:>9.3f}")
    calls = tally.requests()
    retries = sum(tally.attempts.values()) - calls
    print(f"    {'total':<42} {calls / runs:>9.2f} {calls / steps:>9.3f}"
          f"   ({retries} retries)")
    for (svc, op, code), n in sorted(tally.errors.items()):
        print(f"    ! {n} x {svc} {op} answered {code}")


def report_requests(counted: Counted) -> bool:
    """Print one workflow's request figures; returns whether the write target is met."""
    runs, steps = counted.runs, counted.steps
    print(f"\n(a) {counted.shape.label}: {runs} runs, {steps} steps")
    _print_ops("on the run's path (caller, branch threads)", counted.path, runs, steps)
    if counted.deferred.requests():
        _print_ops("afterwards, by the embedded worker", counted.deferred, runs,
                   steps)
    else:
        print("  later, by the embedded worker: nothing arrived (watch messages not drained)")
    total = Tally()
    total.add(counted.path)
    total.add(counted.deferred)
    writes = total.requests("dynamodb", DDB_WRITES) / steps
    reads = total.requests("dynamodb", DDB_READS) / steps
    met = writes <= WRITE_TARGET
    verdict = "PASS" if met else "MISS"
    print(f"  DynamoDB write requests per step  {writes:.3f}  (target <= {WRITE_TARGET}: "
          f"{verdict})")
    print(f"  DynamoDB read requests per step   {reads:.3f}")
    print(f"  SQS requests per run              {total.sqs_requests() / runs:.2f}")
    print(f"  S3 requests per run               {(total.s3_put + total.s3_get) / runs:.2f}")
    print(
        f"  capacity per step                 {total.table_wru / steps:.2f} WRU items + "
        f"{total.index_wru / steps:.2f} WRU index entries "
        f"({total.index_writes / steps:.2f} entry writes), {total.rru / steps:.2f} RRU"
    )
    costs = total.cost_usd()
    per_million = {name: usd / steps * 1e6 for name, usd in costs.items()}
    parts = " + ".join(f"${usd:.3f} {name}" for name, usd in per_million.items())
    print(f"  est. cost per million steps       ${sum(per_million.values()):.2f} = {parts}")
    return met


@dataclass
class Idle:
    """A world with no runs and an embedded worker polling it, on a server of its own."""

    meter: Meter
    world: Any
    runtime: Runtime
    config: Any
    tally: Tally = dataclasses.field(default_factory=Tally)
    seconds: float = 0.0


def start_idle(setup: Setup) -> Idle:
    """Start an embedded worker on an empty world with the default ``AwsConfig`` settings."""
    from worlds.aws import AwsWorld

    config = create_resources(setup, "bench-idle")
    world = AwsWorld(config=config)
    meter = Meter(classify=lambda *_: "idle")
    meter.attach(world.clients.dynamodb, world.clients.sqs, world.clients.s3)
    _ = world.queue.url
    meter.reset()
    runtime = Runtime(world, RuntimeOptions())
    runtime.ensure_worker()
    return Idle(meter, world, runtime, config)


def stop_idle(idle: Idle) -> None:
    idle.runtime.stop()
    idle.seconds = time.monotonic() - idle.meter.started
    idle.tally = idle.meter.take("idle")
    idle.world.close()


def report_idle(idle: Idle) -> None:
    """Print the idle embedded worker's polling rate and what it costs per month."""
    seconds, tally, config = idle.seconds, idle.tally, idle.config
    if not seconds or not tally.requests():
        return
    rates = ", ".join(f"{name} {n / seconds:.2f}/s" for name, n in _ops(tally))
    monthly = sum(tally.cost_usd().values()) / seconds * MONTH
    print(
        f"\n(a) idle embedded worker on an empty world, default settings (receive_wait="
        f"{config.receive_wait:g} s, sweep_interval={config.sweep_interval:g} s, poll_interval="
        f"{idle.runtime.options.poll_interval:g} s), over {seconds:.0f} s on its own server:"
    )
    print(f"  {tally.requests() / seconds:.2f} requests/s: {rates}")
    print(f"  est. ${monthly:.2f} per worker-month, without any runs (index sweeps read more "
          "as runs wait)")


def input_cost(setup: Setup, size: int) -> Tally:
    """The run path's requests of one sequential run whose input is a ``size``-byte string."""
    from worlds.aws import AwsWorld

    config = create_resources(setup, f"bench-input-{size}", receive_wait=0.0)
    world = AwsWorld(config=config)
    meter = Meter()
    meter.attach(world.clients.dynamodb, world.clients.sqs, world.clients.s3)
    _ = world.queue.url
    meter.reset()
    try:
        with installed(world, worker=False):
            sequential_input("x" * size, SHAPES[0].steps)
    finally:
        world.close()
    return meter.take("run")


def report_inputs(tallies: dict[int, Tally], threshold: int) -> None:
    """Print how the run's input size changes the capacity of each step."""
    steps = SHAPES[0].steps
    print(
        f"\n(a) sequential workflow, 10 steps, by input size (one run each, run path only; "
        f"inputs up to payload_threshold={threshold:,} B are written once, in DynamoDB, "
        "beside the run record):"
    )
    print(f"  {'input':>9} {'writes/step':>12} {'WRU/step items + index':>24} {'RRU/step':>9}"
          f" {'$ per million steps':>20}")
    for size, tally in tallies.items():
        writes = tally.requests("dynamodb", DDB_WRITES) / steps
        usd = sum(tally.cost_usd().values()) / steps * 1e6
        print(
            f"  {size:>7,} B {writes:>12.2f} {tally.table_wru / steps:>14.1f} + "
            f"{tally.index_wru / steps:<7.1f} {tally.rru / steps:>9.2f} {usd:>20.2f}"
        )


# -- (b) throughput --------------------------------------------------------------------------


class _Attempts:
    def __init__(self, *clients: Any) -> None:
        self.count = 0
        for client in clients:
            client.meta.events.register("before-send.*.*", self._sent)

    def _sent(self, **_: Any) -> None:
        self.count += 1


def aws_rate(setup: Setup, shape: Shape, runs: int) -> tuple[float, float]:
    """steps/s of ``shape`` on moto (a fresh table per run) and HTTP requests per second."""
    from worlds.aws import AwsWorld
    from worlds.aws._clients import Clients

    base = create_resources(setup, f"bench-tp-{shape.key}")
    clients = Clients(base)
    attempts = _Attempts(clients.dynamodb, clients.sqs, clients.s3)
    elapsed = 0.0
    sent = 0
    try:
        for i in range(runs + 1):  # the first run warms up (imports, connections): not timed
            table = f"{base.prefix}-{i}"
            create_table(setup, table)
            world = AwsWorld(config=dataclasses.replace(base, table=table), clients=clients)
            _ = world.queue.url
            with installed(world, worker=False):
                before = attempts.count
                start = time.perf_counter()
                shape.run()
                if i:
                    elapsed += time.perf_counter() - start
                    sent += attempts.count - before
            delete_table(setup, table)
    finally:
        clients.close()
    return runs * shape.steps / elapsed, sent / elapsed


def sqlite_rate(shape: Shape, runs: int) -> float:
    """steps/s of ``shape`` on the SQLite world (one file, WAL)."""
    from worlds.sqlite import SqliteWorld

    TMP.mkdir(parents=True, exist_ok=True)
    path = TMP / f"{shape.key}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    world = SqliteWorld(f"sqlite:///{path}")
    try:
        with installed(world, worker=False):
            shape.run()
            start = time.perf_counter()
            for _ in range(runs):
                shape.run()
            elapsed = time.perf_counter() - start
    finally:
        world.close()
    return runs * shape.steps / elapsed


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (~45 s)")
    args = parser.parse_args()
    counted_runs = {"sequential": 3, "map": 1} if args.quick else {"sequential": 10, "map": 2}
    timed_runs = {"sequential": 5, "map": 1} if args.quick else {"sequential": 20, "map": 3}
    sqlite_runs = {"sequential": 100, "map": 10} if args.quick else {"sequential": 500, "map": 30}
    endpoint, process = start_moto()
    idle_endpoint, idle_process = start_moto()
    print(f"moto servers {endpoint}, {idle_endpoint} (each serves one request at a time)")
    try:
        setup = setup_clients(endpoint)
        rates = {}
        for shape in SHAPES:  # first, while no worker polls the server
            rates[shape.key] = (
                *aws_rate(setup, shape, timed_runs[shape.key]),
                sqlite_rate(shape, sqlite_runs[shape.key]),
            )
        idle = start_idle(setup_clients(idle_endpoint))
        counted = [count_requests(setup, shape, counted_runs[shape.key]) for shape in SHAPES]
        inputs = {size: input_cost(setup, size) for size in INPUT_SIZES}
        print(f"waiting until ~{counted[0].runtime.options.lease_ttl + 1:.0f} s after each last "
              "run, for the watch messages the embedded worker then settles...")
        for item in counted:
            drain(item, timeout=30.0)
        stop_idle(idle)
    finally:
        stop_moto(process)
        stop_moto(idle_process)
        shutil.rmtree(TMP, ignore_errors=True)
    met = all([report_requests(item) for item in counted])
    report_inputs(inputs, idle.config.payload_threshold)
    report_idle(idle)
    print("\n(b) steps/s: moto server on loopback, one request at a time, a fresh table per run")
    print("    (not AWS: there a request takes a few ms but many run at once; moto's")
    print("    TransactWriteItems also copies the whole table per item, so tables are kept small)")
    for shape in SHAPES:
        aws, requests, sqlite = rates[shape.key]
        print(
            f"  {shape.key:<11} aws/moto {aws:>8,.0f} steps/s ({requests:,.0f} requests/s, "
            f"{1000 / requests:.1f} ms each)   sqlite {sqlite:>8,.0f} steps/s   "
            f"aws/sqlite {aws / sqlite:.3f}"
        )
    print("\nassumptions of the cost estimate:")
    for line in ASSUMPTIONS:
        print(f"  - {line}")
    print("\nall write targets met" if met else "\nSOME WRITE TARGETS MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
