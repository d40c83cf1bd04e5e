"""Real `durable worker` processes sharing a SQLite world: killed workers and graceful shutdown.

A worker that meets a run of a workflow it does not know leaves it pending for one that does:
that is covered by ``test_bad_input.py::test_run_of_unknown_workflow_stays_pending_for_a_worker
_that_knows_it`` (and the log line by ``test_worker_log_says_why_...``), so it is not repeated here.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from durable.world import World
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until
from tests.system.workloads import multistep

MODULE = "tests.system.workloads.multistep"
OPS = [str(i) for i in range(1, multistep.STEPS + 1)]
# The default lease (30 s) is kept on purpose: a killed worker's runs must be taken over because
# its process is gone (same host), not because its leases lapsed.
LEASE_TTL = "30"


def _effects(path: Path) -> list[tuple[int, str, str]]:
    """``(pid, run_id, op_id)`` of every step attempt, in the order they started."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        pid, run_id, op = line.split(" ")
        rows.append((int(pid), run_id, op))
    return rows


def _record_runs(sync: int, asynchronous: int) -> dict[str, tuple[str, int]]:
    runs: dict[str, tuple[str, int]] = {}
    for n in range(sync + asynchronous):
        wf = multistep.multistep if n < sync else multistep.multistep_async
        run = wf.with_options(execute=False).start(n)
        runs[run.id] = (run.workflow_name, n)
    return runs


def _check_logs(world: World, runs: dict[str, tuple[str, int]]) -> None:
    """Every run completed with the right result, each step recorded once, seqs consecutive."""
    for run_id, (_, n) in runs.items():
        record = world.get_run(run_id)
        assert record is not None and record.status == "completed", record
        assert record.lease_owner is None, record
        assert durable.get_run(run_id).result(timeout=5) == multistep.expected(n)
        events = world.read_events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), (run_id, events)
        completed = [e.op_id for e in events if e.kind == "step_completed"]
        assert completed == OPS, (run_id, completed)
        kinds = Counter(e.kind for e in events)
        assert kinds["run_created"] == 1 and kinds["run_completed"] == 1, (run_id, kinds)
        assert not kinds["run_failed"] and not kinds["step_failed"], (run_id, kinds)


def _wait_all_completed(world: World, total: int, timeout: float) -> None:
    def done() -> bool:
        counts = world.count_runs()
        assert not counts.get("failed") and not counts.get("cancelled"), counts
        return counts.get("completed", 0) == total

    wait_until(done, timeout, f"{total} runs to complete", interval=0.05)


def _assert_clean(log: str) -> None:
    for bad in ("Traceback", "ERROR", "CRITICAL"):
        assert bad not in log, log


# -- SIGKILL: the other worker takes over at once ------------------------------------------------


@pytest.mark.timeout(60)
def test_sigkilled_worker_runs_are_finished_by_the_other_worker(
    tmp_path: Path, procs: Procs
) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    effects_file = tmp_path / "effects.txt"
    env = env_for(url, MULTISTEP_EFFECTS=str(effects_file))
    options = ("--concurrency", "4", "--poll-interval", "0.05", "--lease-ttl", LEASE_TTL)

    with local_durable(url) as runtime:
        world = runtime.world
        runs = _record_runs(sync=20, asynchronous=10)
        victim = procs.worker([MODULE], env, *options)
        survivor = procs.worker([MODULE], env, *options)
        for worker in (victim, survivor):
            worker.stderr.wait_for(lambda line: "INFO worker " in line, 30)

        # Kill the victim once it is well into its runs (4 at a time, 6 steps of 50-100 ms each).
        wait_until(
            lambda: sum(pid == victim.pid for pid, _, _ in _effects(effects_file)) >= 10,
            20,
            "the victim to execute some steps",
            interval=0.01,
        )
        victim.kill()
        killed_at = time.monotonic()
        seen_at_kill = _effects(effects_file)
        assert world.count_runs().get("completed", 0) < len(runs), "killed too late to matter"

        _wait_all_completed(world, len(runs), 20)
        recovered_in = time.monotonic() - killed_at
        assert recovered_in < float(LEASE_TTL) / 2, (
            f"took {recovered_in:.1f}s after the kill: dead-owner leases were not taken at once"
        )
        assert survivor.stop() == 0, survivor.stderr.text
        _assert_clean(survivor.stderr.text)
        _check_logs(world, runs)

    rows = _effects(effects_file)
    assert rows[: len(seen_at_kill)] == seen_at_kill
    assert {pid for pid, _, _ in rows} <= {victim.pid, survivor.pid}
    assert not [r for r in rows[len(seen_at_kill) :] if r[0] == victim.pid], "victim ran on"

    by_run: dict[str, list[tuple[int, str]]] = {}
    for pid, run_id, op in rows:
        by_run.setdefault(run_id, []).append((pid, op))
    assert set(by_run) == set(runs)

    taken_over = 0
    for run_id, attempts in by_run.items():
        assert {op for _, op in attempts} == set(OPS), (run_id, attempts)
        repeated = [op for op, n in Counter(op for _, op in attempts).items() if n > 1]
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


# -- SIGTERM / SIGINT: graceful shutdown loses nothing ---------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_graceful_shutdown_loses_nothing(
    tmp_path: Path, procs: Procs, signum: int, kind: str
) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    effects_file = tmp_path / "effects.txt"
    env = env_for(url, MULTISTEP_EFFECTS=str(effects_file))
    options = ("--concurrency", "8", "--poll-interval", "0.05", "--lease-ttl", LEASE_TTL)

    with local_durable(url) as runtime:
        world = runtime.world
        # sync: runs execute on the worker's thread pool; async: on its event loop thread.
        runs = _record_runs(sync=24, asynchronous=0) if kind == "sync" else _record_runs(0, 24)
        first = procs.worker([MODULE], env, *options)
        first.stderr.wait_for(lambda line: "INFO worker " in line, 30)
        # Signal once a batch of runs is mid-way (8 at a time, 6 steps of 50-100 ms each).
        wait_until(
            lambda: sum(op == "2" for _, _, op in _effects(effects_file)) >= 4,
            20,
            "runs to be in flight",
            interval=0.01,
        )
        first.popen.send_signal(signum)
        signalled_at = time.monotonic()
        code = first.wait(15)
        stopped_in = time.monotonic() - signalled_at
        log = first.stderr.text
        assert code == 0, log
        assert stopped_in < 10, f"took {stopped_in:.1f}s to stop"
        _assert_clean(log)

        # Nothing is left leased to the stopped worker: each run finished, or was released,
        # or never started.
        records = [world.get_run(run_id) for run_id in runs]
        stranded = [
            (r.id, r.status, r.lease_owner)
            for r in records
            if r is not None and (r.status == "running" or r.lease_owner is not None)
        ]
        assert not stranded, f"runs left leased by the stopped worker: {stranded}\n{log}"
        statuses = Counter(r.status for r in records if r is not None)
        assert statuses["completed"] < len(runs), "stopped too late to matter"
        assert set(statuses) <= {"pending", "completed"}, statuses
        done_at_stop = {r.id for r in records if r is not None and r.status == "completed"}
        ran_at_stop = _effects(effects_file)

        # A second worker finishes everything else, without redoing recorded work.
        second = procs.worker([MODULE], env, *options)
        _wait_all_completed(world, len(runs), 20)
        assert second.stop() == 0, second.stderr.text
        _assert_clean(second.stderr.text)
        _check_logs(world, runs)

    rows = _effects(effects_file)
    assert rows[: len(ran_at_stop)] == ran_at_stop
    executions = Counter((run_id, op) for _, run_id, op in rows)
    assert set(executions) == {(run_id, op) for run_id in runs for op in OPS}
    repeated = {key: n for key, n in executions.items() if n != 1}
    assert not repeated, f"steps executed more than once across a graceful stop: {repeated}"
    assert not [r for r in rows[len(ran_at_stop) :] if r[1] in done_at_stop]
    print(f"stopped in {stopped_in:.2f}s with {len(done_at_stop)}/{len(runs)} runs done")
