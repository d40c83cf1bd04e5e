"""SIGKILL a process executing a run at random points; a fresh process must finish the run.

Nothing recorded may be lost or rewritten, every step's result is recorded exactly once, and a
step runs again only if it was in flight when its process died (at most once more per kill).

Set DURABLE_CRASH_SEED to replay one sequence of kill points.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from durable.world import FINISHED_STATUSES, Event
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until
from tests.system.workloads import crashy
from tests.system.workloads.between import between

MODULE = "tests.system.workloads.crashy"
TRIALS = 24
CALIBRATION_RUNS = 3
WORKER_OPTIONS = ("--lease-ttl", "2", "--poll-interval", "0.05")


def _effects(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        run_id, index, pid = line.split(" ")
        rows.append((run_id, int(index), int(pid)))
    return rows


def _effects_of(path: Path, run_id: str) -> list[tuple[int, int]]:
    return [(index, pid) for rid, index, pid in _effects(path) if rid == run_id]


def _frozen(events: list[Event]) -> list[tuple[object, ...]]:
    return [(e.seq, e.kind, e.op_id, e.name, e.data, e.created_at) for e in events]


def _completed_ops(events: list[Event]) -> list[str]:
    return [e.op_id for e in events if e.kind == "step_completed"]  # type: ignore[misc]


def _calibrate(procs: Procs, env: dict[str, str], world) -> float:
    """Seconds from a driver's "ready" to the end of its run, uninterrupted (fastest of three).

    The fastest, so that few kills land after the run has already finished.
    """
    fastest = float("inf")
    for n in range(CALIBRATION_RUNS):
        run_id, salt = f"calibrate-{n}", f"c{n}"
        proc = procs.python(MODULE, ["run", run_id, salt], env)
        proc.stdout.wait_for(lambda line: line.strip() == "ready", 30)
        ready = time.monotonic()
        proc.stdout.wait_for(lambda line: line.strip() == "done", 30)
        fastest = min(fastest, time.monotonic() - ready)
        assert proc.wait(30) == 0, proc.stderr.text
        assert world.get_run(run_id).status == "completed"
    return fastest


@pytest.mark.timeout(150)
def test_sigkill_at_random_points_loses_and_repeats_nothing(tmp_path: Path, procs: Procs):
    seed = int(os.environ.get("DURABLE_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: {seed} (rerun with DURABLE_CRASH_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    effects = tmp_path / "effects.txt"
    # synchronous=FULL makes every commit an fsync of the log, widening the window in which a
    # kill lands mid-commit.
    url = sqlite_url(db, synchronous="FULL")
    env = env_for(url, CRASHY_EFFECTS=str(effects))
    outcomes: Counter[str] = Counter()
    extra_executions = 0

    with local_durable(url) as runtime:
        world = runtime.world
        run_time = _calibrate(procs, env, world)
        print(f"an uninterrupted run takes {run_time * 1000:.0f} ms after its process is ready")

        for trial in range(TRIALS):
            run_id, salt = f"crash-{trial}", f"s{seed}-{trial}"
            context = f"seed {seed}, trial {trial}, run {run_id}"

            # The victim: either a standalone worker executing a run this test recorded, or a
            # driver process that records the run itself (so kills also land in create_run).
            if trial % 2:
                crashy.crashy.with_options(run_id=run_id, execute=False).start(salt)
                victim = procs.worker([MODULE], env, *WORKER_OPTIONS)
                victim.stderr.wait_for(lambda line: "INFO worker " in line, 30)
            else:
                victim = procs.python(MODULE, ["run", run_id, salt], env)
                victim.stdout.wait_for(lambda line: line.strip() == "ready", 30)
            time.sleep(rng.uniform(0.0, 1.25 * run_time))
            victim.kill()

            # What survived the kill.
            record = world.get_run(run_id)
            at_kill = world.read_events(run_id) if record is not None else []
            done_at_kill = _completed_ops(at_kill)
            tried_at_kill = _effects_of(effects, run_id)
            returned_at_kill = _effects_of(Path(f"{effects}.returned"), run_id)
            assert [i for i, _ in tried_at_kill] == list(range(len(tried_at_kill))), context
            assert {pid for _, pid in tried_at_kill} <= {victim.pid}, context
            assert done_at_kill == [str(i + 1) for i in range(len(done_at_kill))], context
            assert len(done_at_kill) <= len(tried_at_kill) <= len(done_at_kill) + 1, context
            assert len(done_at_kill) <= len(returned_at_kill) <= len(tried_at_kill), context
            assert [e.seq for e in at_kill] == list(range(1, len(at_kill) + 1)), context

            if record is None:
                outcome = "before the run was recorded"
            elif record.status in FINISHED_STATUSES:
                outcome = "after the run finished"
            elif len(returned_at_kill) > len(done_at_kill):
                outcome = "mid-commit (step returned, result not yet durable)"
            elif len(tried_at_kill) > len(done_at_kill):
                outcome = "mid-step (side effect done, step still running)"
            elif not tried_at_kill:
                outcome = "after the run was recorded, before its first step"
            else:
                outcome = "between steps (engine code)"
            outcomes[outcome] += 1
            print(f"trial {trial}: killed {outcome}; {len(done_at_kill)} steps recorded")

            # Recovery in a fresh process.
            if record is None:
                crashy.crashy.with_options(run_id=run_id, execute=False).start(salt)
            if record is None or record.status not in FINISHED_STATUSES:
                rescuer = procs.worker([MODULE], env, *WORKER_OPTIONS)
                wait_until(
                    lambda run_id=run_id: world.get_run(run_id).status in FINISHED_STATUSES,
                    30,
                    f"run {run_id} to be recovered ({context})",
                )
                assert rescuer.stop() == 0, rescuer.stderr.text
                assert "Traceback" not in rescuer.stderr.text, rescuer.stderr.text
                rescuer_pids = {rescuer.pid}
            else:
                rescuer_pids = set()

            final = world.get_run(run_id)
            assert final.status == "completed", (context, final)
            assert durable.get_run(run_id).result(timeout=5) == crashy.expected(salt), context

            events = world.read_events(run_id)
            assert _frozen(events[: len(at_kill)]) == _frozen(at_kill), (
                f"{context}: events recorded before the kill changed"
            )
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), context
            done = Counter(_completed_ops(events))
            assert done == {str(i + 1): 1 for i in range(crashy.STEPS)}, (context, done)
            assert {e.name for e in events if e.kind == "step_completed"} == {"crashy_step"}
            assert [e.kind for e in events].count("run_completed") == 1, context
            assert events[-1].kind == "run_completed", context

            tried = _effects_of(effects, run_id)
            counts = Counter(index for index, _ in tried)
            assert set(counts) == set(range(crashy.STEPS)), (context, counts)
            twice = sorted(index for index, n in counts.items() if n == 2)
            assert all(n in (1, 2) for n in counts.values()), (context, counts)
            # Only the step in flight at the kill runs twice (once in the victim, once in the
            # rescuer, since its result was not recorded); steps whose result was recorded never
            # run again.
            if outcome.startswith("mid-"):
                assert twice == [len(done_at_kill)], (context, twice)
            else:
                assert twice == [], (context, twice)
            for index in twice:
                assert [pid for i, pid in tried if i == index] == [victim.pid, *rescuer_pids]
            for index, pid in tried[len(tried_at_kill) :]:
                assert pid in rescuer_pids and index >= len(done_at_kill), context
            extra_executions += len(twice)

    mid_run = TRIALS - outcomes["after the run finished"] - outcomes["before the run was recorded"]
    print(f"seed {seed}: kill points {dict(outcomes)}; {extra_executions} repeated step(s)")
    assert extra_executions <= mid_run
    assert mid_run >= TRIALS // 5, (
        f"seed {seed}: only {mid_run} of {TRIALS} kills landed while a run was executing: "
        f"{dict(outcomes)}"
    )
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert check.execute("SELECT COUNT(*) FROM runs WHERE status = 'completed'").fetchone() == (
            TRIALS + CALIBRATION_RUNS,
        )
    check.close()


@pytest.mark.timeout(90)
def test_a_kill_during_the_workflows_own_code_after_a_step_does_not_run_the_step_again(
    tmp_path: Path, procs: Procs
):
    url = sqlite_url(tmp_path / "between.db")
    effects, mark = tmp_path / "effects.txt", tmp_path / "mark"
    env = env_for(url, BETWEEN_EFFECTS=str(effects), BETWEEN_MARK=str(mark))
    module = "tests.system.workloads.between"
    first = procs.worker([module], env, *WORKER_OPTIONS)
    with local_durable(url) as runtime:
        run = between.with_options(execute=False).start("order-7")
        wait_until(mark.exists, 30, "the workflow to reach its own code between the steps")
        # The step's completion is committed while the workflow's own code runs, not after it.
        wait_until(
            lambda: "step_completed" in [e.kind for e in runtime.world.read_events(run.id)],
            5,
            "the finished step to be committed",
        )
        first.kill()
        second = procs.worker([module], env, *WORKER_OPTIONS)
        assert run.result(timeout=30) == ["charged order-7", "shipped order-7"]
        assert second.stop() == 0, second.stderr.text
    ran = [line.split()[0] for line in effects.read_text().splitlines()]
    assert ran == ["charge_card", "ship"]
