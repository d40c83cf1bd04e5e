"""Real ``durable worker`` processes sharing one AWS world (a moto server): kills and SIGTERM.

The AWS counterpart of ``tests/system/test_workers.py``: a worker killed mid-run has its runs
finished by the other worker, and a worker stopped with SIGTERM hands its runs back first.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import worker_workload as ww  # noqa: E402

from durable._client import use_runtime  # noqa: E402
from durable._runtime import Runtime, RuntimeOptions  # noqa: E402
from tests.aws_server import create_world_resources  # noqa: E402
from tests.system._support import ROOT, Proc, Procs, env_for, wait_until  # noqa: E402
from worlds.aws import AwsWorld  # noqa: E402

MODULE = "worker_workload"
RUNS = 12


@pytest.fixture
def procs() -> Iterator[Procs]:
    manager = Procs()
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def world(moto_endpoint: str) -> Iterator[AwsWorld]:
    """A fresh world whose workers sweep the due index every 2 s (the URL says so).

    A sweep is two dozen queries, and the moto server answers one request at a time: sweeping
    at every poll would starve the workers' own writes.
    """
    config = create_world_resources(moto_endpoint)
    world = AwsWorld(config=dataclasses.replace(config, sweep_interval=2.0))
    assert "sweep_interval=2.0" in world.url and "endpoint_url=" in world.url, world.url
    runtime = Runtime(world, RuntimeOptions(worker=False))
    previous = use_runtime(runtime)
    try:
        yield world
    finally:
        use_runtime(previous)
        runtime.stop()
        world.close()


def _env(world: AwsWorld, effects: Path) -> dict[str, str]:
    return env_for(
        world.url,
        WORKER_EFFECTS=str(effects),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]),
    )


def _start_worker(procs: Procs, env: dict[str, str], lease_ttl: str) -> Proc:
    return procs.worker(
        [MODULE], env, "--concurrency", "4", "--poll-interval", "0.25", "--lease-ttl", lease_ttl
    )


def _effects(path: Path) -> list[tuple[int, str, str]]:
    """``(pid, run_id, op_id)`` of every step attempt, in the order they started."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        pid, run_id, op = line.split(" ")
        rows.append((int(pid), run_id, op))
    return rows


def _start_runs(count: int = RUNS, steps: int = ww.STEPS) -> dict[str, int]:
    start = ww.aws_multistep.with_options(execute=False).start
    return {start(n, steps).id: n for n in range(count)}


def _wait_all_completed(world: AwsWorld, total: int, timeout: float) -> None:
    def done() -> bool:
        counts = world.count_runs()
        assert not counts.get("failed") and not counts.get("cancelled"), counts
        return counts.get("completed", 0) == total

    wait_until(done, timeout, f"{total} runs to complete", interval=0.2)


def _check_logs(world: AwsWorld, runs: dict[str, int], steps: int = ww.STEPS) -> list[str]:
    """Every run completed with its result, each step recorded once; returns the step ids."""
    ops: list[str] | None = None
    for run_id, n in runs.items():
        record = world.get_run(run_id)
        assert record is not None and record.status == "completed", record
        assert record.lease_owner is None, record
        import durable

        assert durable.get_run(run_id).result(timeout=5) == ww.expected(n, steps)
        events = world.read_events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), (run_id, events)
        completed = [e.op_id for e in events if e.kind == "step_completed"]
        assert len(completed) == steps == len(set(completed)), (run_id, completed)
        assert ops is None or completed == ops, (run_id, completed, ops)
        ops = completed
        kinds = Counter(e.kind for e in events)
        assert kinds["run_created"] == 1 and kinds["run_completed"] == 1, (run_id, kinds)
        assert not kinds["run_failed"] and not kinds["step_failed"], (run_id, kinds)
    assert ops is not None
    return ops


def _assert_clean(log: str) -> None:
    for bad in ("Traceback", "ERROR", "CRITICAL"):
        assert bad not in log, log


def _held_by(world: AwsWorld, runs: dict[str, int], pid: int) -> list[Any]:
    """Runs whose lease names the process ``pid`` (owner ids are ``host:pid:random``)."""
    records = [world.get_run(run_id) for run_id in runs]
    return [
        (r.id, r.status, r.lease_owner)
        for r in records
        if r is not None and r.lease_owner is not None and r.lease_owner.split(":")[1] == str(pid)
    ]


# -- SIGKILL: the other worker finishes every run --------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "lease_ttl",
    [
        # A lease that outlasts the test: the victim's runs must be taken because its process
        # is gone (same host), not because its leases lapsed.
        "30",
        # A short lease: the survivor must renew its own leases in time or lose runs to the
        # other worker (which would repeat steps), and the victim's lapse within seconds.
        "2",
    ],
    ids=["dead-owner", "short-lease"],
)
def test_sigkilled_worker_runs_are_finished_by_the_other_worker(
    tmp_path: Path, procs: Procs, world: AwsWorld, lease_ttl: str
) -> None:
    effects_file = tmp_path / "effects.txt"
    env = _env(world, effects_file)
    runs = _start_runs()
    victim = _start_worker(procs, env, lease_ttl)
    survivor = _start_worker(procs, env, lease_ttl)
    for worker in (victim, survivor):
        worker.stderr.wait_for(lambda line: "INFO worker " in line, 30)

    # Kill the victim once it is well into its runs (4 at a time, 6 steps of 80-150 ms each).
    wait_until(
        lambda: sum(pid == victim.pid for pid, _, _ in _effects(effects_file)) >= 6,
        30,
        "the victim to execute some steps",
        interval=0.01,
    )
    victim.kill()
    killed_at = time.monotonic()
    seen_at_kill = _effects(effects_file)
    assert world.count_runs().get("completed", 0) < len(runs), "killed too late to matter"

    _wait_all_completed(world, len(runs), 40)
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < 15, (
        f"took {recovered_in:.1f}s after the kill: the victim's runs were not taken over soon"
    )
    assert survivor.stop() == 0, survivor.stderr.text
    _assert_clean(survivor.stderr.text)
    ops = _check_logs(world, runs)

    rows = _effects(effects_file)
    assert rows[: len(seen_at_kill)] == seen_at_kill
    assert {pid for pid, _, _ in rows} <= {victim.pid, survivor.pid}
    assert not [r for r in rows[len(seen_at_kill) :] if r[0] == victim.pid], "victim ran on"

    by_run: dict[str, list[tuple[int, str]]] = {}
    for pid, run_id, op in rows:
        by_run.setdefault(run_id, []).append((pid, op))
    assert set(by_run) == set(runs)

    # A step had finished before the kill if a later step of its run had started by then.
    started_at_kill: dict[str, list[str]] = {}
    for _, run_id, op in seen_at_kill:
        started_at_kill.setdefault(run_id, []).append(op)
    completed_at_kill = {
        (run_id, op) for run_id, started in started_at_kill.items() for op in started[:-1]
    }

    taken_over = 0
    for run_id, attempts in by_run.items():
        assert {op for _, op in attempts} == set(ops), (run_id, attempts)
        counts = Counter(op for _, op in attempts)
        # Each step's side effect happens at most twice; a step that had finished before the
        # kill (a later step of its run had started) exactly once.
        assert max(counts.values()) <= 2, (run_id, attempts)
        for op, n in counts.items():
            if (run_id, op) in completed_at_kill:
                assert n == 1, f"run {run_id}: step {op} finished before the kill but ran again"
        repeated = [op for op, n in counts.items() if n > 1]
        pids = [pid for pid, _ in attempts]
        if victim.pid in pids and survivor.pid in pids:
            taken_over += 1
            # The victim ran a prefix of the run; the survivor the rest, starting with the step
            # that was in flight when the victim died (if its result was not yet recorded).
            split = pids.index(survivor.pid)
            assert set(pids[:split]) == {victim.pid} and set(pids[split:]) == {survivor.pid}, (
                run_id,
                attempts,
            )
            assert len(repeated) <= 1, (run_id, attempts)
            if repeated:
                assert repeated == [attempts[split - 1][1]] == [attempts[split][1]], (
                    run_id,
                    attempts,
                )
        else:
            assert not repeated, f"run {run_id} repeated steps without a crash: {attempts}"
    assert taken_over >= 1, "the victim held no run in flight when it was killed"
    print(f"{taken_over} runs taken over; all done {recovered_in:.2f}s after the kill")


# -- SIGTERM: runs in flight are handed back and finished by the other worker -------------------


@pytest.mark.timeout(90)
def test_sigterm_hands_runs_back_to_the_other_worker_and_loses_nothing(
    tmp_path: Path, procs: Procs, world: AwsWorld
) -> None:
    effects_file = tmp_path / "effects.txt"
    env = _env(world, effects_file)
    # Runs long enough (12 steps, ~1.4 s) that those in flight cannot finish while it stops.
    steps = 12
    runs = _start_runs(8, steps)
    stopping = _start_worker(procs, env, "30")
    other = _start_worker(procs, env, "30")
    for worker in (stopping, other):
        worker.stderr.wait_for(lambda line: "INFO worker " in line, 30)

    wait_until(
        lambda: sum(pid == stopping.pid for pid, _, _ in _effects(effects_file)) >= 4,
        30,
        "the stopping worker to execute some steps",
        interval=0.01,
    )
    stopping.popen.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    code = stopping.wait(15)
    stopped_in = time.monotonic() - signalled_at
    log = stopping.stderr.text
    assert code == 0, log
    assert stopped_in < 10, f"took {stopped_in:.1f}s to stop"
    _assert_clean(log)
    # Nothing is left leased to the stopped worker: its runs finished or were handed back.
    assert not _held_by(world, runs, stopping.pid), log
    ran_at_stop = _effects(effects_file)
    assert world.count_runs().get("completed", 0) < len(runs), "stopped too late to matter"

    _wait_all_completed(world, len(runs), 40)
    assert other.stop() == 0, other.stderr.text
    _assert_clean(other.stderr.text)
    ops = _check_logs(world, runs, steps)

    rows = _effects(effects_file)
    assert rows[: len(ran_at_stop)] == ran_at_stop
    assert not [r for r in rows[len(ran_at_stop) :] if r[0] == stopping.pid], "it ran on"
    executions = Counter((run_id, op) for _, run_id, op in rows)
    assert set(executions) == {(run_id, op) for run_id in runs for op in ops}
    repeated = {key: n for key, n in executions.items() if n != 1}
    assert not repeated, f"steps executed more than once across a graceful stop: {repeated}"
    handed_over = {
        run_id for pid, run_id, _ in ran_at_stop if pid == stopping.pid
    } & {run_id for pid, run_id, _ in rows[len(ran_at_stop) :] if pid == other.pid}
    assert handed_over, (
        f"no run was in flight in the stopped worker (stopped in {stopped_in:.2f}s)\n{log}"
    )
    print(f"stopped in {stopped_in:.2f}s; {len(handed_over)} runs finished by the other worker")
