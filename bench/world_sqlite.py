"""The SQLite world's inline path against a raw sqlite3 commit loop, in one process.

Run it from the repository root::

    python -m bench.world_sqlite            # 5 rounds of 3,000 workflows; --quick for fewer

Each iteration does, through the World API, what an inline 3-step workflow does: ``create_run``
(leased to its owner), three single-event appends, and one append that completes the run and
releases its lease (5 transactions). The raw loop does 5 single-row ``INSERT`` + ``COMMIT``
transactions per iteration, like ``bench/peers.py`` (WAL, ``synchronous=NORMAL``, default page
size). Every round uses fresh files in one directory and runs each contender once, in a rotating
order, because the machine may be shared and noisy; the figures reported are medians over rounds.

The ratio printed is the engine benchmark's target: durable steps/s (3 per workflow) over raw
commits/s (target >= 40%). ``--world module:Class`` (repeatable) measures other world classes
with the same harness, e.g. a saved copy of an older ``SqliteWorld`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import random
import shutil
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / ".bench-tmp" / "world_sqlite"
OWNER = "o:1:x"
INPUT = b'{"args":[3],"kwargs":{}}'
STEPS = 3
COMMITS = 5  # raw commits per iteration: as many transactions as one inline workflow makes
WARMUP = 100
RAW = "raw sqlite3"


def _fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _world_class(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "SqliteWorld")


def durable_round(world_class: Any, path: Path, iterations: int) -> float:
    """Seconds per inline 3-step workflow through the World API."""
    from durable.world import NewEvent, NewRun, RunUpdate

    world = world_class(f"sqlite:///{_fresh(path)}")
    steps = [[NewEvent("step_completed", str(i), "work", b"4")] for i in range(1, STEPS + 1)]
    done = [NewEvent("run_completed")]
    update = RunUpdate("completed", output=b"4", release=True)

    def workflow(run_id: str) -> None:
        world.create_run(NewRun(run_id, "wf", INPUT), owner=OWNER, lease_ttl=30)
        for events in steps:
            world.append(run_id, OWNER, events)
        world.append(run_id, OWNER, done, update)

    try:
        for i in range(WARMUP):
            workflow(f"warm_{i:032x}")
        # Run ids are random in practice (uuid4), so rows keyed by id land on random pages.
        ids = [f"wrun_{i:032x}" for i in range(iterations)]
        random.Random(7).shuffle(ids)
        start = time.perf_counter()
        for run_id in ids:
            workflow(run_id)
        elapsed = time.perf_counter() - start
        record = world.get_run(ids[0])
        assert record is not None and record.status == "completed" and record.last_seq == 5
        assert record.output == b"4" and record.input == INPUT
    finally:
        world.close()
    return elapsed / iterations


def raw_round(path: Path, iterations: int) -> float:
    """Seconds per ``COMMITS`` single-row INSERT + COMMIT transactions (as bench/peers.py)."""
    conn = sqlite3.connect(_fresh(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        payload = b"x" * 64
        sql = "INSERT INTO t (v) VALUES (?)"
        for _ in range(WARMUP * COMMITS):
            conn.execute("BEGIN")
            conn.execute(sql, (payload,))
            conn.execute("COMMIT")
        start = time.perf_counter()
        for _ in range(iterations * COMMITS):
            conn.execute("BEGIN")
            conn.execute(sql, (payload,))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return elapsed / iterations


def ratio(workflow_s: float, raw_s: float) -> float:
    """Durable steps/s over raw commits/s."""
    return (STEPS / workflow_s) / (COMMITS / raw_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1,000")
    parser.add_argument(
        "--world",
        action="append",
        help="module:Class of a world to measure (repeatable; default worlds.sqlite:SqliteWorld)",
    )
    parser.add_argument("--dir", type=Path, default=TMP, help="where the files go")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.rounds = 1000, 3
    specs: list[str] = args.world or ["worlds.sqlite:SqliteWorld"]
    classes = {spec: _world_class(spec) for spec in specs}
    contenders = [RAW, *specs]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    print(f"{args.rounds} rounds x {args.iterations} iterations; files in {args.dir}")
    print("us per iteration (durable: one 3-step workflow; raw: 5 commits)")
    print(f"{'round':>5}  " + "  ".join(f"{name:>28}" for name in contenders))
    for r in range(args.rounds):
        shift = r % len(contenders)
        for name in contenders[shift:] + contenders[:shift]:
            gc.collect()
            if name == RAW:
                seconds = raw_round(args.dir / "raw.db", args.iterations)
            else:
                seconds = durable_round(classes[name], args.dir / "durable.db", args.iterations)
            times[name].append(seconds)
        print(f"{r:>5}  " + "  ".join(f"{times[name][-1] * 1e6:>28.1f}" for name in contenders))
    shutil.rmtree(args.dir, ignore_errors=True)

    raw = statistics.median(times[RAW])
    print(
        f"\nraw sqlite3: median {raw * 1e6:.1f} us per {COMMITS} commits "
        f"({COMMITS / raw:,.0f} commits/s)"
    )
    for spec in specs:
        d = statistics.median(times[spec])
        paired = statistics.median(
            ratio(a, b) for a, b in zip(times[spec], times[RAW], strict=True)
        )
        print(
            f"{spec}: median {d * 1e6:.1f} us per workflow ({STEPS / d:,.0f} steps/s), "
            f"{d / raw:.2f}x the raw loop"
        )
        print(
            f"  ratio durable steps/s / raw commits/s: {ratio(d, raw):.0%} "
            f"(median of rounds {paired:.0%}; target >= 40%)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
