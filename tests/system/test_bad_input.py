"""Bad input gives a clear error that says what to fix, and loses nothing already recorded."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from durable import (
    InvalidDuration,
    NonDeterminismError,
    RunNotFound,
    SerializationError,
    WorkflowFailed,
    WorldError,
)
from durable.world import FINISHED_STATUSES, Event, open_world
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until
from tests.system.workloads import fanout, sleepy, slow

WORKER_OPTIONS = ("--lease-ttl", "2", "--poll-interval", "0.05")


def _frozen(events: list[Event]) -> list[tuple[object, ...]]:
    return [(e.seq, e.kind, e.op_id, e.name, e.data, e.created_at) for e in events]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- unserializable arguments ------------------------------------------------------------------


class CustomerHandle:
    """Not JSON: a handle on something outside the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


@pytest.mark.timeout(60)
def test_unserializable_arguments_are_refused_and_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("FANOUT_EFFECTS", str(tmp_path / "effects.txt"))
    with local_durable(sqlite_url(tmp_path / "world.db")) as runtime:
        world = runtime.world
        good = fanout.fanout.with_options(execute=False).start(1)
        before = _frozen(good.events())

        with pytest.raises(SerializationError) as positional:
            fanout.fanout.with_options(run_id="bad-positional").start(CustomerHandle())
        message = str(positional.value)
        assert "CustomerHandle" in message, message
        assert "workflow 'fanout'" in message, message

        with pytest.raises(SerializationError) as keyword:
            fanout.fanout.with_options(run_id="bad-keyword").start(n={"handle": threading.Lock()})
        message = str(keyword.value)
        assert "_thread.lock" in message and "workflow 'fanout'" in message, message
        assert '"n"' in message, message  # which argument holds it

        # Calling the workflow directly fails the same way, before anything runs.
        with pytest.raises(SerializationError, match="workflow 'fanout'"):
            fanout.fanout(CustomerHandle())

        assert [run.id for run in world.list_runs()] == [good.id]
        for run_id in ("bad-positional", "bad-keyword"):
            with pytest.raises(RunNotFound):
                durable.get_run(run_id)
        assert _frozen(good.events()) == before
        assert not (tmp_path / "effects.txt").exists()


# -- a workflow whose code changed between runs --------------------------------------------------


@pytest.mark.timeout(60)
def test_changed_workflow_code_fails_the_run_with_non_determinism_error(tmp_path, procs: Procs):
    url = sqlite_url(tmp_path / "world.db")
    effects = tmp_path / "effects.txt"
    env = env_for(url, VERSIONED_EFFECTS=str(effects))

    # Version 1 runs reserve and charge, then suspends on a one-hour sleep, and its process exits.
    v1 = procs.python("tests.system.workloads.versioned_v1", ["start", "order-7"], env)
    assert v1.wait(30) == 0, v1.stderr.text
    run_id = v1.stdout.text.strip()

    with local_durable(url) as runtime:
        run = durable.get_run(run_id)
        assert run.status == "suspended"
        before = _frozen(run.events())
        assert [(e.kind, e.op_id, e.name) for e in run.events()] == [
            ("run_created", None, "versioned"),
            ("step_completed", "1", "reserve"),
            ("step_completed", "2", "charge"),
            ("sleep_started", "3", "sleep"),
        ]

        # Version 2 inserts a "validate" step after "reserve" and resumes the run two hours later.
        v2 = procs.python("tests.system.workloads.versioned_v2", ["resume", run_id], env)
        assert v2.wait(45) == 0, v2.stderr.text
        outcome = json.loads(v2.stdout.text)
        assert outcome["status"] == "failed", outcome
        assert outcome["cause"] == "NonDeterminismError", outcome

        with pytest.raises(WorkflowFailed) as info:
            run.result(timeout=5)
        failure = info.value
        assert "NonDeterminismError" in failure.error_type
        assert isinstance(failure.cause, NonDeterminismError)
        assert "position 2" in failure.error_message
        assert "step 'charge'" in failure.error_message  # what the log recorded there
        assert "step 'validate'" in failure.error_message  # what the new code calls there
        assert failure.error_message == outcome["error_message"]
        assert run.status == "failed"

        after = run.events()
        assert _frozen(after[: len(before)]) == before, "events recorded before were changed"
        assert [e.kind for e in after[len(before) :]] == ["run_failed"]
        assert runtime.world.get_run(run_id).lease_owner is None

    # The replay returned the recorded "reserve" result without running it again, and the new
    # "validate" step never ran.
    ran = Counter(line.split()[0] for line in effects.read_text().splitlines())
    assert ran == {"reserve": 1, "charge": 1}


# -- an unknown workflow name in the log --------------------------------------------------------


def _record_versioned_run(procs: Procs, env: dict[str, str]) -> str:
    recorder = procs.python("tests.system.workloads.versioned_v1", ["record", "order-9"], env)
    assert recorder.wait(30) == 0, recorder.stderr.text
    return recorder.stdout.text.strip()


def _run_worker_briefly(procs: Procs, module: str, env: dict[str, str], seconds: float) -> str:
    worker = procs.worker([module], env, *WORKER_OPTIONS)
    worker.stderr.wait_for(lambda line: "INFO worker " in line, 30)
    time.sleep(seconds)
    assert worker.stop() == 0, worker.stderr.text
    return worker.stderr.text


@pytest.mark.timeout(60)
def test_run_of_unknown_workflow_stays_pending_for_a_worker_that_knows_it(tmp_path, procs):
    url = sqlite_url(tmp_path / "world.db")
    env = env_for(url, VERSIONED_EFFECTS=str(tmp_path / "effects.txt"))
    run_id = _record_versioned_run(procs, env)

    with local_durable(url) as runtime:
        before = _frozen(runtime.world.read_events(run_id))
        log = _run_worker_briefly(procs, "tests.system.workloads.sleepy", env, 0.6)
        assert "Traceback" not in log, log
        record = runtime.world.get_run(run_id)
        assert record.status == "pending" and record.lease_owner is None, record
        assert _frozen(runtime.world.read_events(run_id)) == before

        # A worker that knows the workflow picks the run up, untouched.
        knowing = procs.worker(["tests.system.workloads.versioned_v1"], env, *WORKER_OPTIONS)
        wait_until(
            lambda: runtime.world.get_run(run_id).status == "suspended", 30, "the run to start"
        )
        assert knowing.stop() == 0, knowing.stderr.text
        events = runtime.world.read_events(run_id)
        assert _frozen(events[: len(before)]) == before
        assert [e.name for e in events if e.kind == "step_completed"] == ["reserve", "charge"]


@pytest.mark.timeout(60)
def test_worker_log_says_why_a_run_of_an_unknown_workflow_is_left_pending(tmp_path, procs):
    url = sqlite_url(tmp_path / "world.db")
    env = env_for(url)
    run_id = _record_versioned_run(procs, env)
    log = _run_worker_briefly(procs, "tests.system.workloads.sleepy", env, 0.6)
    with local_durable(url) as runtime:
        assert runtime.world.get_run(run_id).status == "pending"
    lowered = log.lower()
    assert "'versioned'" in log, log
    assert any(why in lowered for why in ("no workflow named", "unknown", "not registered")), log


# -- a corrupt database file --------------------------------------------------------------------


def _garbage(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: _garbage(1, 64 * 1024), id="garbage"),
        pytest.param(lambda: b"SQLite format 3\x00" + _garbage(2, 64 * 1024), id="bad-header"),
    ],
)
@pytest.mark.timeout(60)
def test_corrupt_database_file_is_refused_and_left_unchanged(tmp_path, procs, content):
    db = tmp_path / "corrupt.db"
    db.write_bytes(content())
    digest = _digest(db)
    url = sqlite_url(db)

    with pytest.raises(WorldError) as info:
        open_world(url)
    assert str(db) in str(info.value), info.value
    assert "corrupt" in str(info.value) or "not a" in str(info.value), info.value

    worker = procs.worker(["tests.system.workloads.sleepy"], env_for(url), *WORKER_OPTIONS)
    code = worker.wait(30)
    assert code != 0, worker.stderr.text
    assert str(db) in worker.stderr.text, worker.stderr.text
    assert "Traceback" not in worker.stderr.text, worker.stderr.text

    assert _digest(db) == digest, "durable modified the corrupt file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.db"]


def _damaged_copy(tmp_path: Path) -> tuple[Path, str]:
    """A real durable database with every page after the first overwritten with garbage."""
    db = tmp_path / "damaged.db"
    url = sqlite_url(db)
    with local_durable(url):
        for n in range(20):
            sleepy.sleepy.with_options(execute=False).start(n)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    page = 4096
    data = bytearray(db.read_bytes())
    assert len(data) > 2 * page
    data[page:] = _garbage(3, len(data) - page)
    db.write_bytes(bytes(data))
    return db, url


@pytest.mark.timeout(60)
def test_damaged_pages_give_an_error_naming_the_file_and_are_left_unchanged(tmp_path):
    db, url = _damaged_copy(tmp_path)
    digest = _digest(db)
    with pytest.raises(WorldError) as info:
        world = open_world(url)
        try:
            world.list_runs()
        finally:
            world.close()
    assert str(db) in str(info.value), info.value
    assert "corrupt" in str(info.value), info.value
    assert _digest(db) == digest


@pytest.mark.timeout(60)
def test_worker_on_damaged_database_exits_with_an_error(tmp_path, procs):
    db, url = _damaged_copy(tmp_path)
    digest = _digest(db)
    worker = procs.worker(["tests.system.workloads.sleepy"], env_for(url), *WORKER_OPTIONS)
    try:
        code = worker.wait(3)
    finally:
        assert _digest(db) == digest
    assert code != 0 and str(db) in worker.stderr.text


# -- a locked database file ---------------------------------------------------------------------


def _lock(db: Path) -> sqlite3.Connection:
    # Waits for a worker's own short write transaction, if one is in progress.
    holder = sqlite3.connect(db, isolation_level=None, timeout=5)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def _unlock(holder: sqlite3.Connection) -> None:
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.timeout(60)
def test_locked_database_gives_world_error_naming_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("FANOUT_EFFECTS", str(tmp_path / "effects.txt"))
    db = tmp_path / "world.db"
    with local_durable(sqlite_url(db, busy_timeout="0.2")) as runtime:
        world = runtime.world
        assert fanout.fanout(3) == fanout.expected(3)  # executed here, to completion
        done = world.list_runs()[0]
        before = _frozen(world.read_events(done.id))

        holder = _lock(db)
        try:
            started = time.monotonic()
            with pytest.raises(WorldError) as info:
                fanout.fanout.with_options(run_id="while-locked", execute=False).start(4)
            waited = time.monotonic() - started
        finally:
            _unlock(holder)

        message = str(info.value)
        assert "locked" in message and str(db) in message, message
        assert "busy_timeout" in message, message  # says how to wait longer
        assert 0.15 <= waited < 5, waited

        # Nothing was written by the failed call, and what was recorded before is intact.
        with pytest.raises(RunNotFound):
            durable.get_run("while-locked")
        assert world.get_run(done.id) == done
        assert _frozen(world.read_events(done.id)) == before
        assert durable.get_run(done.id).result(timeout=1) == fanout.expected(3)
        # And the world works again.
        fanout.fanout.with_options(run_id="after-unlock", execute=False).start(5)
        assert durable.get_run("after-unlock").status == "pending"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


@pytest.mark.timeout(60)
def test_lock_during_a_step_commit_does_not_fail_or_strand_the_run(tmp_path, procs):
    db = tmp_path / "world.db"
    url = sqlite_url(db, busy_timeout="0.2")
    effects, gate = tmp_path / "effects.txt", tmp_path / "gate"
    env = env_for(url, SLOW_EFFECTS=str(effects), SLOW_GATE=str(gate))
    with local_durable(url) as runtime:
        world = runtime.world
        run = slow.slow.with_options(execute=False).start(4)
        # The default lease (30 s) so that the outcome does not depend on whether the lease
        # happens to lapse: the worker itself must notice that its write failed and carry on.
        worker = procs.worker(["tests.system.workloads.slow"], env, "--poll-interval", "0.05")
        wait_until(effects.exists, 30, "the slow step to start")
        holder = _lock(db)
        try:
            gate.touch()  # the step returns now; recording its result hits the lock
            time.sleep(1.0)
        finally:
            _unlock(holder)
        wait_until(
            lambda: world.get_run(run.id).status in FINISHED_STATUSES, 6, "the run to finish"
        )
        assert worker.stop() == 0
        assert run.result(timeout=1) == 50
        kinds = [e.kind for e in run.events()]
        assert "run_failed" not in kinds
        ran = Counter(line.split()[0] for line in effects.read_text().splitlines())
        assert ran["slow_step"] <= 2 and ran["quick_step"] == 1, ran


# -- bad durations ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_invalid_duration_inside_a_workflow_fails_the_run_clearly(tmp_path, procs):
    url = sqlite_url(tmp_path / "world.db")
    with local_durable(url) as runtime:
        world = runtime.world
        runs = {
            "unparsable": sleepy.sleepy.with_options(execute=False).start("5 parsecs"),
            "negative": sleepy.sleepy.with_options(execute=False).start(-3),
            "negative-string": sleepy.sleepy.with_options(execute=False).start("-2 minutes"),
        }
        worker = procs.worker(["tests.system.workloads.sleepy"], env_for(url), *WORKER_OPTIONS)
        wait_until(
            lambda: all(world.get_run(r.id).status in FINISHED_STATUSES for r in runs.values()),
            30,
            "the runs to finish",
        )
        assert worker.stop() == 0, worker.stderr.text
        assert "Traceback" not in worker.stderr.text, worker.stderr.text

        for label, run in runs.items():
            with pytest.raises(WorkflowFailed) as info:
                run.result(timeout=1)
            failure = info.value
            assert "InvalidDuration" in failure.error_type, (label, failure)
            assert isinstance(failure.cause, InvalidDuration), (label, failure)
            assert "invalid duration" in failure.error_message, (label, failure)
            assert '"30s"' in failure.error_message, (label, failure)  # the accepted formats
            assert "durable.sleep(duration)" in failure.traceback, (label, failure.traceback)
            events = [(e.kind, e.op_id, e.name) for e in run.events()]
            assert events == [
                ("run_created", None, "sleepy"),
                ("step_completed", "1", "before_sleep"),
                ("run_failed", None, None),
            ], (label, events)
        assert "5 parsecs" in json.loads(runs["unparsable"].record.error)["message"]
        assert "negative" in json.loads(runs["negative"].record.error)["message"]
        assert "negative" in json.loads(runs["negative-string"].record.error)["message"]


@pytest.mark.parametrize("duration", ["5 parsecs", "", "soon", -1, "-5s", float("nan"), True])
def test_invalid_duration_outside_a_workflow_raises_at_once(duration):
    started = time.monotonic()
    with pytest.raises(InvalidDuration) as info:
        durable.sleep(duration)
    assert time.monotonic() - started < 0.5
    message = str(info.value)
    assert message.startswith("invalid duration"), message
    for example in ('"30s"', '"5 minutes"', '"1h30m"', "timedelta"):
        assert example in message, message
    assert isinstance(info.value, ValueError)
    if isinstance(duration, str) and duration:
        assert duration in message


_announced: list[str] = []


@durable.step
def _announce_once(what: str) -> str:
    _announced.append(what)
    return what


@durable.workflow(name="bad_input_schema_damaged_meanwhile")
def _announce(db_path: str) -> str:
    _announce_once("first")
    damage = sqlite3.connect(db_path)  # someone damages the schema while the run executes
    damage.execute("DROP TABLE hooks")
    damage.close()
    return _announce_once("second")


def test_a_world_failure_retrying_cannot_fix_stops_the_worker_instead_of_rerunning_steps(
    tmp_path,
):
    db = tmp_path / "world.db"
    _announced.clear()
    with local_durable(sqlite_url(db)) as runtime:
        with pytest.raises(WorldError) as info:
            _announce(str(db))
        assert "no such table: hooks" in str(info.value) and str(db) in str(info.value)
        assert not info.value.transient
        assert runtime.fatal_error is info.value
        time.sleep(0.5)  # a worker that kept retrying would run the last step again meanwhile
        # Each step ran once and is recorded; recording the outcome failed, and was not retried
        # in a loop.
        assert _announced == ["first", "second"]
        run = runtime.world.list_runs()[0]
        assert [e.kind for e in runtime.world.read_events(run.id)] == [
            "run_created",
            "step_completed",
            "step_completed",
        ]
        with pytest.raises(WorldError):
            durable.get_run(run.id).result(timeout=5)  # says why, rather than waiting forever
