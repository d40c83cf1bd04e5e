"""durable.testing: a week-long workflow finishes in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import durable
import durable.testing
from durable.testing import TestWorld, world


@durable.step
def remind(who: str) -> str:
    return f"reminded {who}"


@durable.workflow
def weekly_reminder(who: str) -> list[str]:
    out = [remind(who)]
    durable.sleep("7 days")
    out.append(remind(who))
    return out


def test_fixture_skips_time(durable_world):
    start = time.monotonic()
    assert weekly_reminder("ada") == ["reminded ada", "reminded ada"]
    assert time.monotonic() - start < 5
    assert durable_world.now() - durable_world.started_at >= 7 * 86400


@durable.workflow
def child_naps(i: int) -> int:
    durable.sleep("7 days")
    return i


parent_executions = 0


@durable.workflow
def waits_on_napping_children(n: int) -> list[int]:
    global parent_executions
    parent_executions += 1
    return durable.map(lambda i: child_naps(i), range(n))


def test_a_parent_waiting_a_week_for_its_children_replays_a_few_times(durable_world):
    # The parent looks at its children less often the longer it waits; looking every minute,
    # the skipping clock replayed it some 10,000 times (tens of seconds).
    global parent_executions
    parent_executions = 0
    assert waits_on_napping_children(3) == [0, 1, 2]
    assert durable_world.now() - durable_world.started_at >= 7 * 86400
    assert parent_executions < 40


@durable.step
def stamp() -> float:
    return durable.now().timestamp()


@durable.workflow
def stamps_a_week_apart() -> list[float]:
    first = stamp()
    durable.sleep("7 days")
    return [first, stamp()]


def test_now_inside_a_step_reads_the_skipping_clock(durable_world):
    first, second = stamps_a_week_apart()
    assert second - first >= 7 * 86400
    assert second == pytest.approx(durable_world.now(), abs=60)
    assert abs(durable.now().timestamp() - time.time()) < 60  # outside: the wall clock


step_entered = threading.Event()
step_may_end = threading.Event()
executions: list[int] = []


@durable.step
def blocking_step(i: int) -> int:
    executions.append(i)
    if i == 1:
        step_entered.set()
        assert step_may_end.wait(10)
    return i


@durable.workflow
def two_blocking_steps() -> list[int]:
    return [blocking_step(1), blocking_step(2)]


@contextlib.contextmanager
def _inside_its_first_step() -> Iterator[tuple[TestWorld, durable.Run]]:
    """A run of ``two_blocking_steps`` held in its first step; once released, it must have run
    each step once."""
    executions.clear()
    step_entered.clear()
    step_may_end.clear()
    with world(time_skipping=False) as env:
        run = two_blocking_steps.start()
        assert step_entered.wait(10)
        yield env, run
        step_may_end.set()
        assert run.result(timeout=10) == [1, 2]
        assert executions == [1, 2]
        assert [e.op_id for e in run.events() if e.kind == "step_completed"] == ["1", "2"]


@pytest.mark.parametrize("how", ["advance", "renewals fell behind"])
def test_a_run_whose_lease_lapsed_while_it_executes_here_runs_once(how):
    # advance() keeps the leases of runs executing; without it (a worker's renewals falling
    # behind) the worker claims its own run again, and must not start a second execution.
    with _inside_its_first_step() as (env, run):
        if how == "advance":
            env.advance("1 hour", wait=0)  # the step waits on this test: jump at once
        else:
            env.clock.advance("1 hour")
            env.runtime.poll_once()  # claims it again (or the embedded worker has, just before)
            record = env.world.get_run(run.id)
            assert record is not None and record.lease_expires_at is not None
            assert record.lease_expires_at > env.now()  # re-leased, to the worker executing it
        time.sleep(0.3)  # the embedded worker polls meanwhile


def test_a_second_execution_of_a_run_in_one_process_waits_for_the_first(caplog):
    # However a second execution comes about (the run handed to execute() again while its code
    # runs), it must not replay beside the first: the run continues once the first ends.
    with _inside_its_first_step() as (env, run):
        record = env.world.get_run(run.id)
        assert record is not None
        assert env.runtime.execute(record).status == "pending"
        assert "already executing in this process" in caplog.text


def test_manual_clock_control():
    with world(time_skipping=False) as env:
        run = weekly_reminder.start("bob")
        deadline = time.monotonic() + 5
        while run.status != "suspended" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.status == "suspended"
        env.advance("6 days")
        time.sleep(0.05)
        assert run.status == "suspended"
        env.advance("1 day")
        assert run.result(timeout=5) == ["reminded bob", "reminded bob"]


def test_worlds_are_isolated():
    with world() as first:
        weekly_reminder("x")
        assert len(first.world.list_runs()) == 1
    with world() as second:
        assert second.world.list_runs() == []


_held_calls: list[float] = []
_gate = threading.Event()


@durable.step
def held_step() -> int:
    _held_calls.append(time.monotonic())
    _gate.wait(5)
    return len(_held_calls)


@durable.workflow(name="testing_held")
def held() -> int:
    return held_step()


def test_time_skipping_never_makes_a_run_started_meanwhile_look_abandoned():
    """A run started between the worker's idle check and its jump keeps its lease."""
    _held_calls.clear()
    _gate.clear()
    with world() as env:
        started: list[durable.Run] = []
        original = env.world.next_due_at

        def started_meanwhile(names=None):  # the worker thread, deciding whether to skip
            if not started:
                started.append(held.start())  # its step blocks on the gate, leased
            return original(names)

        env.world.next_due_at = started_meanwhile  # type: ignore[method-assign]
        threading.Timer(0.5, _gate.set).start()
        assert weekly_reminder("eve") == ["reminded eve", "reminded eve"]
        assert started[0].result(timeout=10) == 1
    assert len(_held_calls) == 1  # never executed a second time as if its worker had died


_flips = {"calls": 0}


@durable.step
def step_a() -> str:
    return "a"


@durable.step
def step_b() -> str:
    return "b"


@durable.workflow
def flips_on_replay() -> str:
    # Not deterministic: the code takes another path each time it runs.
    _flips["calls"] += 1
    first = step_a() if _flips["calls"] == 1 else step_b()
    return first + step_a()


def _assert_replayed() -> None:
    """A run of flips_on_replay fails as diverged: it was replayed (forced replay is on)."""
    _flips["calls"] = 0
    with pytest.raises(durable.WorkflowFailed, match="NonDeterminismError"):
        flips_on_replay.start().result(timeout=5)


def test_configure_inside_a_test_keeps_the_test_world(durable_world):
    durable.configure(force_replay=True)
    runtime = durable.get_runtime()
    assert runtime.world is durable_world.world
    assert runtime.options.force_replay and runtime.options.time_skipping is not None
    assert durable_world.runtime is runtime
    start = time.monotonic()
    assert weekly_reminder("eve") == ["reminded eve", "reminded eve"]
    assert time.monotonic() - start < 5
    _assert_replayed()


def test_configure_without_a_world_changes_only_what_it_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = durable._client.current_runtime()
    try:
        durable.configure("memory://", worker=False, poll_interval=0.5)
        durable.configure(max_concurrent_runs=3)
        runtime = durable.get_runtime()
        assert runtime.world.url == "memory://"
        assert not runtime.options.worker and runtime.options.poll_interval == 0.5
        assert runtime.options.max_concurrent_runs == 3
        assert not (tmp_path / ".durable").exists()
        durable.configure("memory://")
        assert durable.get_runtime().options.worker  # a new world starts from the defaults
    finally:
        durable.get_runtime().stop()
        durable._client.use_runtime(previous)


def test_durable_force_replay_in_the_environment_reaches_the_test_world(monkeypatch):
    monkeypatch.setenv("DURABLE_FORCE_REPLAY", "1")
    with world() as env:
        assert env.runtime.options.force_replay
        _assert_replayed()
    with world(force_replay=False) as env:
        assert not env.runtime.options.force_replay


def test_a_process_without_its_worker_leaves_the_runs_it_starts_to_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = durable._client.current_runtime()
    try:
        runtime = durable.configure("memory://", worker=False)
        left = stamps_a_week_apart.start()
        time.sleep(0.2)
        assert left.status == "pending" and left.events()[-1].kind == "run_created"
        here = two_blocking_steps.with_options(execute=True)
        step_may_end.set()
        assert here.start().result(timeout=10) == [1, 2]  # asked for: executed here all the same
        assert runtime.world.get_run(left.id).status == "pending"
    finally:
        durable.get_runtime().stop()
        durable._client.use_runtime(previous)


def test_a_run_handle_follows_a_configure_that_keeps_the_world(durable_world):
    run = weekly_reminder.start("cy")
    durable.configure(force_replay=True)  # a new runtime on the same world; the old one stops
    assert run.result(timeout=10) == ["reminded cy", "reminded cy"]


@durable.workflow(name="testing.reminder_then_approval")
def reminder_then_approval(who: str) -> list[str]:
    out = [remind(who)]
    durable.sleep("7 days")
    out.append(remind(who))
    hook = durable.create_hook(token=f"approve:{who}")
    out.append(str(hook.wait()))
    return out


def test_advance_right_after_start_runs_what_comes_due_before_it_returns():
    # Without waiting for the run to reach its sleep first, the clock could jump before the
    # sleep was recorded (which would then start after the jump and never end in the test).
    with world(time_skipping=False) as env:
        runs = [reminder_then_approval.start(f"user{i}") for i in range(5)]
        env.advance("7 days")
        for run in runs:  # no waiting: advance() returned once each run waited on its hook
            assert run.status == "suspended"
            assert [e.kind for e in run.events()].count("step_completed") == 2
        for i in range(len(runs)):
            durable.resume_hook(f"approve:user{i}", "yes")
        assert env.wait_until_idle()
        assert [run.status for run in runs] == ["completed"] * 5
        assert runs[0].result(timeout=0) == ["reminded user0", "reminded user0", "yes"]


def test_wait_until_idle_gives_up_while_a_step_waits_on_the_test():
    with _inside_its_first_step() as (env, _run):
        started = time.monotonic()
        assert env.wait_until_idle(timeout=0.2) is False
        assert time.monotonic() - started < 2


def test_the_clock_can_start_at_a_chosen_time():
    leap_day = datetime(2024, 2, 29, 23, 0, tzinfo=UTC)
    with world(start=leap_day) as env:
        first, second = stamps_a_week_apart()
        assert first == leap_day.timestamp() and env.started_at == leap_day.timestamp()
        assert datetime.fromtimestamp(second, tz=UTC).date().isoformat() == "2024-03-07"
    with pytest.raises(ValueError, match="has no timezone"), world(start=datetime(2024, 2, 29)):
        pass


def test_replay_of_a_finished_test_run_is_complete_without_a_clock(durable_world):
    run = weekly_reminder.start("ada")
    assert run.result(timeout=5) == ["reminded ada", "reminded ada"]
    replayed = durable.replay(weekly_reminder, ["ada"], events=run.events())
    assert (replayed.status, replayed.result) == ("completed", ["reminded ada", "reminded ada"])


def weekly_reminder_v2(who: str) -> list[str]:
    out = [remind(who)]
    durable.sleep("7 days")
    if durable.patched("twice"):
        out.append(remind(who.upper()))
    out.append(remind(who))
    return out


def test_deploy_runs_recorded_runs_under_changed_code():
    with world(time_skipping=False) as env:
        old = weekly_reminder.start("ada")
        assert env.wait_until_idle() and old.status == "suspended"
        with durable.testing.deploy(weekly_reminder, weekly_reminder_v2):
            env.advance("7 days")
            assert old.result(timeout=0) == ["reminded ada", "reminded ADA", "reminded ada"]
        new = weekly_reminder.start("bob")
        env.advance("7 days")
        assert new.result(timeout=0) == ["reminded bob", "reminded bob"]  # the old code again


_never_released = threading.Event()


@durable.step
def waits_for_the_test() -> int:
    step_entered.set()
    _never_released.wait(30)
    return 1


@durable.workflow(name="testing.stuck")
def stuck() -> int:
    return waits_for_the_test()


def test_stop_does_not_wait_forever_for_a_step_that_never_returns(caplog):
    step_entered.clear()
    try:
        with world() as env:
            stuck.start()
            assert step_entered.wait(10)
            started = time.monotonic()
            env.runtime.stop(timeout=0.3)
            assert time.monotonic() - started < 3
            assert "still executing a step after 0.3 s" in caplog.text
            _never_released.set()  # or leaving the world waits 10 s more for it
    finally:
        _never_released.set()


def test_a_test_on_the_default_world_is_warned(isolated_cwd, monkeypatch):
    from durable._client import use_runtime

    monkeypatch.delenv("DURABLE_WORLD", raising=False)
    previous = use_runtime(None)
    try:
        expected = r"a test is using the default world .*durable_world"
        with pytest.warns(UserWarning, match=expected) as said:
            runtime = durable.configure()
        assert said[0].filename == __file__  # points at the test, not at durable
        runtime.stop()
        runtime.world.close()
    finally:
        use_runtime(previous)


@durable.workflow(name="testing.awaits_forever")
def awaits_forever() -> object:
    return durable.create_hook(token="never").wait()


def test_waiting_on_a_hook_nobody_resumes_says_why_nothing_moves(durable_world, caplog,
                                                                  monkeypatch):
    monkeypatch.setattr("durable._runtime._STALL_WARNING", 0.05)
    run = awaits_forever.start()
    with pytest.raises(TimeoutError):
        run.result(timeout=0.5)
    assert f"wait for outside input (hook 'never' (run {run.id}))" in caplog.text
    durable.resume_hook("never", 1)
    assert run.result(timeout=5) == 1


@durable.step(name="testing.declines", retry=durable.RetryPolicy(max_attempts=1))
def declines(card: str) -> None:
    try:
        int(card)
    except ValueError as exc:
        raise RuntimeError(f"card {card!r} declined") from exc


@durable.workflow(name="testing.pays")
def pays(card: str) -> None:
    declines(card)


def test_a_failed_runs_traceback_shows_the_users_frames_not_the_engines(durable_world):
    run = pays.start("x")
    with pytest.raises(durable.WorkflowFailed) as failed:
        run.result(timeout=5)
    engine = f"{Path(durable.__file__).parent}"
    text = failed.value.traceback
    assert "in pays" in text and "in declines" in text and engine not in text, text
    [step_failed] = [e for e in run.events() if e.kind == "step_failed"]
    recorded = step_failed.value()["traceback"]  # the step's own, with its chained errors
    assert "int(card)" in recorded and "The above exception was the direct cause" in recorded
    assert engine not in recorded, recorded


_lease_fresh: list[bool] = []


@durable.step(name="testing.outlasts_its_lease")
def outlasts_its_lease() -> int:
    env = _envs[0]
    # As if the world did not answer this worker's renewals for longer than the lease (an
    # outage): the append of this step's result still lands, the lease being lapsed but not
    # taken. The next step must not start on that lapsed lease.
    env.clock.advance(env.runtime.options.lease_ttl + 1)
    return 1


@durable.step(name="testing.after_the_outage")
def after_the_outage() -> int:
    env = _envs[0]
    record = env.world.get_run(durable.step_info().run_id)
    assert record is not None and record.lease_expires_at is not None
    _lease_fresh.append(record.lease_expires_at > env.now())
    return 2


_envs: list[TestWorld] = []


@durable.workflow(name="testing.outage")
def through_an_outage() -> list[int]:
    return [outlasts_its_lease(), after_the_outage()]


def test_a_step_never_starts_on_a_lapsed_lease():
    _lease_fresh.clear()
    with world(time_skipping=False) as env:
        _envs[:] = [env]
        assert through_an_outage.start().result(timeout=10) == [1, 2]
    assert _lease_fresh == [True]


_mail_attempts: list[int] = []


@durable.step(retry=durable.RetryPolicy(max_attempts=3, initial_delay=60, jitter=False))
def send_link(user: str) -> str:
    _mail_attempts.append(durable.step_info().attempt)
    if len(_mail_attempts) < 2:
        raise ConnectionError("mail server busy")
    return f"link for {user}"


@durable.workflow
def verify_email(user: str) -> str:
    durable.sleep("1h")
    send_link(user)
    hook = durable.create_hook(token=f"verified:{user}")
    return str(hook.wait())


def test_wait_for_hook_goes_past_a_sleep_and_a_retry_delay_to_the_hook(durable_world):
    _mail_attempts.clear()
    run = verify_email.start("ada")
    assert durable_world.wait_until_idle()  # idle while asleep: resuming now would be refused
    with pytest.raises(durable.HookNotFound):
        durable.resume_hook("verified:ada", "yes")
    hook = durable_world.wait_for_hook("verified:ada")
    assert hook.run_id == run.id and _mail_attempts == [1, 2]
    durable.resume_hook("verified:ada", "yes")
    assert run.result(timeout=10) == "yes"


def test_wait_for_hook_says_when_no_run_will_create_it(durable_world):
    with pytest.raises(TimeoutError, match="no hook 'nobody' was created: no run is executing"):
        durable_world.wait_for_hook("nobody", timeout=2)


@durable.workflow
def approve_with_deadline(order: str) -> str:
    hook = durable.create_hook(token=f"approve:{order}", timeout="3 days")
    try:
        return str(hook.wait())
    except durable.HookTimeout:
        return "expired"


def test_wait_for_hook_with_a_wrong_token_leaves_other_hooks_timeouts_alone(durable_world):
    run = approve_with_deadline.start("t1")
    durable_world.wait_for_hook("approve:t1")
    before = durable_world.now()
    with pytest.raises(TimeoutError) as caught:
        durable_world.wait_for_hook("approve:T1")  # a typo: no run creates this one
    message = str(caught.value)
    assert "the clock was not moved" in message and "'approve:t1'" in message
    assert durable_world.now() == before
    assert run.status == "suspended"
    durable.resume_hook("approve:t1", "yes")
    assert run.result(timeout=10) == "yes"


@durable.step(name="testing_async.note")
async def note_async(text: str) -> str:
    return text


@durable.workflow(name="testing_async.approval")
async def approval_async(order: str) -> str:
    await note_async(f"asked {order}")
    await durable.sleep("1 day")
    decision = await durable.create_hook(token=f"approve:{order}")
    return f"{order}: {decision}"


def test_an_async_test_waits_for_a_hook_of_a_run_awaited_on_its_own_loop(durable_world):
    async def scenario() -> str:
        # Awaited here, the run executes on this loop: a blocking wait would stall it.
        task = asyncio.create_task(approval_async("o-1"))
        hook = await durable_world.wait_for_hook_async("approve:o-1")
        assert hook.token == "approve:o-1"
        durable.resume_hook("approve:o-1", "yes")
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(scenario()) == "o-1: yes"


def test_a_blocking_wait_for_hook_on_a_running_loop_points_to_the_async_one(durable_world):
    async def scenario() -> str:
        task = asyncio.create_task(approval_async("o-2"))
        await asyncio.sleep(0)
        try:
            durable_world.wait_for_hook("approve:o-2", timeout=0.5)
        except TimeoutError as exc:
            return str(exc)
        finally:
            task.cancel()
        return "no error"

    assert "await env.wait_for_hook_async(...)" in asyncio.run(scenario())
