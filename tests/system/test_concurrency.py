"""Three `durable worker` processes share one SQLite file and drive 200 runs to completion."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until
from tests.system.workloads import fanout

MODULE = "tests.system.workloads.fanout"
RUNS = 200
WORKERS = 3
STEP_IDS = {
    "1.0.1": "fanout_part",
    "1.1.1": "fanout_part",
    "1.2.1": "fanout_part",
    "2": "fanout_combine",
}


@pytest.mark.timeout(150)
def test_three_workers_complete_every_run_once(tmp_path: Path, procs: Procs):
    url = sqlite_url(tmp_path / "shared.db")
    effects = tmp_path / "effects.txt"
    env = env_for(url, FANOUT_EFFECTS=str(effects))

    with local_durable(url) as runtime:
        world = runtime.world
        started = time.monotonic()
        runs = {}

        def record(numbers: range) -> None:
            for n in numbers:
                run = fanout.fanout.with_options(execute=False).start(n)
                runs[run.id] = n

        # Half the runs wait as a backlog the workers race to claim; the rest arrive while they
        # work. A small --concurrency keeps any one worker from claiming everything at once.
        record(range(RUNS // 2))
        workers = [
            procs.worker([MODULE], env, "--poll-interval", "0.05", "--concurrency", "8")
            for _ in range(WORKERS)
        ]
        for worker in workers:
            worker.stderr.wait_for(lambda line: "INFO worker " in line, 30)
        record(range(RUNS // 2, RUNS))
        assert world.count_runs().keys() <= {"pending", "running", "completed"}

        def all_finished() -> bool:
            counts = world.count_runs()
            assert not counts.get("failed") and not counts.get("cancelled"), counts
            return counts.get("completed", 0) == RUNS

        wait_until(all_finished, 120, f"{RUNS} runs to complete", interval=0.1)
        elapsed = time.monotonic() - started
        codes = [worker.stop() for worker in workers]
        logs = "\n".join(worker.stderr.text for worker in workers)
        assert codes == [0] * WORKERS, logs
        for bad in ("Traceback", "WARNING", "ERROR", "lost the lease"):
            assert bad not in logs, logs

        for run_id, n in runs.items():
            assert world.get_run(run_id).status == "completed"
            assert durable.get_run(run_id).result(timeout=5) == fanout.expected(n)
            events = world.read_events(run_id)
            completed = [(e.op_id, e.name) for e in events if e.kind == "step_completed"]
            assert Counter(op for op, _ in completed) == dict.fromkeys(STEP_IDS, 1), (
                run_id,
                completed,
            )
            assert dict(completed) == STEP_IDS
            assert [e.kind for e in events].count("run_completed") == 1
            assert [e.seq for e in events] == list(range(1, len(events) + 1))

    rows = [line.split(" ") for line in effects.read_text().splitlines()]
    executions = Counter((run_id, step_id) for run_id, step_id, _ in rows)
    assert set(executions) == {(run_id, op) for run_id in runs for op in STEP_IDS}
    repeated = {key: n for key, n in executions.items() if n != 1}
    assert not repeated, f"steps executed more than once: {repeated}"

    pids_by_run: dict[str, set[int]] = {}
    for run_id, _, pid in rows:
        pids_by_run.setdefault(run_id, set()).add(int(pid))
    worker_pids = {worker.pid for worker in workers}
    # Nobody died, so each run was executed start to finish by one worker.
    assert all(len(pids) == 1 for pids in pids_by_run.values())
    per_worker = Counter(next(iter(pids)) for pids in pids_by_run.values())
    assert set(per_worker) <= worker_pids
    print(f"{RUNS} runs in {elapsed:.1f}s; runs per worker pid: {dict(per_worker)}")
    assert len(per_worker) > 1, f"only one worker did any work: {dict(per_worker)}"
