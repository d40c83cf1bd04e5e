"""Engine behaviour through every world, live and under forced replay."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest

import durable
from durable import (
    FatalError,
    NonDeterminismError,
    RetryableError,
    RetryPolicy,
    SerializationError,
    StepFailed,
    WorkflowCancelled,
    WorkflowFailed,
    step,
    workflow,
)
from durable._run import cancel_run
from tests.cancelling import cancel_while_held, wait_asleep, wait_for_event

calls: Counter[str] = Counter()
_calls_lock = threading.Lock()


def hit(name: str) -> int:
    with _calls_lock:
        calls[name] += 1
        return calls[name]


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()
    yield


@dataclass
class Order:
    id: int
    items: tuple[str, ...]


@step
def add(a: int, b: int) -> int:
    hit(f"add:{a}:{b}")
    return a + b


@step
def make_order(n: int) -> Order:
    hit("make_order")
    return Order(n, ("a", "b"))


@workflow
def arithmetic(x: int) -> dict[str, int]:
    a = add(x, 1)
    b = add(a, 10)
    return {"a": a, "b": b}


def test_sequential_steps_record_once(engine):
    assert arithmetic(1) == {"a": 2, "b": 12}
    assert calls == {"add:1:1": 1, "add:2:10": 1}


def test_start_returns_handle_and_events(engine):
    run = arithmetic.start(5)
    assert run.result(timeout=10) == {"a": 6, "b": 16}
    assert run.status == "completed"
    kinds = [(e.kind, e.op_id, e.name) for e in run.events()]
    assert kinds[0][0] == "run_created"
    assert ("step_completed", "1", "add") in kinds
    assert ("step_completed", "2", "add") in kinds
    assert kinds[-1][0] == "run_completed"
    assert durable.get_run(run.id).workflow_name == "arithmetic"


@workflow
def typed(n: int) -> Order:
    order = make_order(n)
    assert isinstance(order, Order) and isinstance(order.items, tuple)
    return order


def test_dataclass_results_round_trip(engine):
    run = typed.start(3)
    assert run.result(timeout=10) == Order(3, ("a", "b"))
    assert calls["make_order"] == 1


def test_idempotent_start_with_run_id(engine, caplog):
    first = arithmetic.with_options(run_id="order-42").start(1)
    assert not [r for r in caplog.records if "already exists" in r.getMessage()]
    second = arithmetic.with_options(run_id="order-42").start(100)
    assert first.id == second.id == "order-42"
    # The second call's arguments are not used: said, not silently dropped.
    warned = [r.getMessage() for r in caplog.records if "already exists" in r.getMessage()]
    assert warned and "with other arguments" in warned[0] and "order-42" in warned[0]
    assert second.result(timeout=10) == {"a": 2, "b": 12}
    assert len(engine.world.list_runs()) == 1
    assert calls["add:1:1"] == 1
    # The id is another workflow's: an error, not that workflow's run (or result).
    message = "run id 'order-42' belongs to a run of workflow 'arithmetic', not 'sleeper'"
    with pytest.raises(durable.ConfigurationError, match=message):
        sleeper.with_options(run_id="order-42").start(1)
    with pytest.raises(durable.ConfigurationError, match=message):
        sleeper.with_options(run_id="order-42")(1)
    assert len(engine.world.list_runs()) == 1


@workflow
def sleeper(days: int) -> str:
    add(1, 1)
    durable.sleep(timedelta(days=days))
    add(2, 2)
    durable.sleep("1h30m")
    return "awake"


def test_long_sleep_suspends_and_resumes(engine):
    started = engine.clock()
    run = sleeper.start(7)
    assert run.result(timeout=10) == "awake"
    assert engine.clock() - started >= 7 * 86400 + 5400
    assert calls == {"add:1:1": 1, "add:2:2": 1}
    wakes = [e for e in run.events() if e.kind == "sleep_started"]
    assert len(wakes) == 2


@workflow
def sleeps_until(when: float) -> float:
    durable.sleep_until(when)
    return durable.now().timestamp()


def test_sleep_until(engine):
    target = engine.clock() + 3600
    assert sleeps_until.start(target).result(timeout=10) >= target - 1e-3


flaky_failures = {"n": 0}


@step(retry=RetryPolicy(max_attempts=4, initial_delay=0.0, jitter=False))
def flaky() -> str:
    attempt = durable.step_info().attempt
    hit(f"flaky:{attempt}")
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} failed")
    return durable.step_info().idempotency_key


@workflow
def retrying() -> str:
    return flaky()


def test_retries_until_success_with_stable_idempotency_key(engine):
    run = retrying.start()
    key = run.result(timeout=10)
    assert key == f"{run.id}:1"
    assert calls == {"flaky:1": 1, "flaky:2": 1, "flaky:3": 1}
    retries = [e for e in run.events() if e.kind == "step_retrying"]
    assert len(retries) == 2


@step(retry=RetryPolicy(max_attempts=3, initial_delay=600, jitter=False))
def slow_retry() -> int:
    attempt = durable.step_info().attempt
    hit(f"slow:{attempt}")
    if attempt == 1:
        raise RetryableError("busy", retry_after="2 hours")
    return attempt


@workflow
def long_retry() -> int:
    return slow_retry()


def test_long_retry_delay_suspends_run(engine):
    started = engine.clock()
    run = long_retry.start()
    assert run.result(timeout=10) == 2
    assert engine.clock() - started >= 7200
    assert calls == {"slow:1": 1, "slow:2": 1}


class PaymentDeclined(Exception):
    pass


@step(retry=RetryPolicy(max_attempts=5, initial_delay=0))
def charge(amount: int) -> str:
    hit("charge")
    if amount > 100:
        raise FatalError(f"card declined for {amount}")
    raise PaymentDeclined(f"declined {amount}")


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0))
def refund(reason: str) -> str:
    hit("refund")
    return f"refunded: {reason}"


@workflow
def compensating(amount: int) -> str:
    try:
        charge(amount)
    except PaymentDeclined as exc:
        return refund(f"PaymentDeclined {exc}")
    except FatalError as exc:
        return refund(f"fatal {exc}")
    return "charged"


def test_exhausted_retries_raise_same_type_at_call_site(engine):
    assert compensating(50) == "refunded: PaymentDeclined declined 50"
    assert calls == {"charge": 5, "refund": 1}


def test_fatal_error_is_not_retried(engine):
    assert compensating(500) == "refunded: fatal card declined for 500"
    assert calls == {"charge": 1, "refund": 1}


class Unbuildable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0))
def breaks() -> None:
    raise Unbuildable(1, 2)


@workflow
def catches_step_failed() -> str:
    try:
        breaks()
    except Unbuildable:
        return "caught Unbuildable"
    except StepFailed as exc:
        durable.sleep("1 hour")  # suspends: a replay takes this path again from the log
        return f"{exc.error_type}: {exc.error_message}"
    return "no error"


def test_a_final_error_that_cannot_be_recreated_is_a_step_failed_live_and_on_replay(engine):
    # A replay can only raise a StepFailed for it, so the live call must too: otherwise the
    # workflow's except clauses take one path live and another after a resume.
    run = catches_step_failed.start()
    assert run.result(timeout=20) == f"{__name__}.Unbuildable: 1/2"


_stuck = threading.Event()


@pytest.fixture
def unstick():
    _stuck.clear()
    yield
    _stuck.set()  # lets the attempts left running in the background finish


@step(timeout="200ms", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
def first_attempt_hangs(label: str) -> str:
    hit(f"{label}:{durable.step_info().attempt}")
    if durable.step_info().attempt == 1:
        _stuck.wait(10)
        return "late"
    return "on time"


@step(timeout=0.1, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
def always_hangs() -> str:
    hit("always")
    _stuck.wait(10)
    return "late"


@step(timeout="200ms", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
async def async_first_attempt_hangs() -> str:
    if hit("async") == 1:
        await asyncio.sleep(10)
    return "on time"


@workflow
def timed_sync() -> str:
    return first_attempt_hangs("sync")


@workflow
async def timed_async() -> list[str]:
    return [await first_attempt_hangs("in async"), await async_first_attempt_hangs()]


@workflow
def times_out() -> str:
    try:
        return always_hangs()
    except TimeoutError as exc:
        return str(exc)


def test_a_step_attempt_past_its_timeout_fails_and_is_retried(engine, unstick):
    assert timed_sync() == "on time"
    assert calls == {"sync:1": 1, "sync:2": 1}
    assert asyncio.run(timed_async()) == ["on time", "on time"]
    assert calls["in async:1"] == calls["in async:2"] == 1 and calls["async"] == 2


def test_a_step_out_of_attempts_raises_timeout_error_naming_the_step(engine, unstick):
    assert times_out() == "step 'always_hangs' did not finish within its 0.1s timeout"
    assert calls == {"always": 2}


_seen_while_busy: list[list[str]] = []


@workflow
def busy_between_steps() -> int:
    first = add(1, 1)
    # The workflow's own code, for longer than a step completion waits for the next write.
    time.sleep(0.3)
    _seen_while_busy.append([e.kind for e in durable.get_run(_busy_run_id[0]).events()])
    return add(first, 1)


_busy_run_id: list[str] = []


def test_a_finished_step_is_committed_while_the_workflow_runs_code_of_its_own(engine):
    _seen_while_busy.clear()
    _busy_run_id[:] = ["busy-between-steps"]
    run = busy_between_steps.with_options(run_id="busy-between-steps").start()
    assert run.result(timeout=10) == 3
    assert "step_completed" in _seen_while_busy[0]


@workflow
def fails() -> None:
    add(1, 2)
    raise ValueError("bad order")


def test_workflow_failure_is_recorded(engine):
    run = fails.start()
    with pytest.raises(WorkflowFailed) as info:
        run.result(timeout=10)
    assert info.value.error_type == "builtins.ValueError" or "ValueError" in info.value.error_type
    assert info.value.error_message == "bad order"
    assert "raise ValueError" in info.value.traceback
    assert isinstance(info.value.cause, ValueError)
    assert run.status == "failed"
    assert calls["add:1:2"] == 1


@workflow
async def forgets_to_await() -> int:
    first = await add(1, 1)
    durable.sleep("7 days")  # no await: it would do nothing
    add(2, 2)  # nor would this step
    return first


def test_a_durable_call_an_async_workflow_never_awaits_fails_the_run(engine):
    run = forgets_to_await.start()
    with pytest.raises(WorkflowFailed) as info:
        run.result(timeout=10)
    assert isinstance(info.value.cause, durable.ConfigurationError), info.value
    message = info.value.error_message
    assert "durable.sleep()" in message and "step 'add'" in message and "await" in message
    assert calls == {"add:1:1": 1}  # what was awaited ran; the rest never did
    assert [e.kind for e in run.events()][-1] == "run_failed"


@workflow(name="engine.forgotten_child")
async def forgotten_child(n: int) -> int:
    return await add(n, n)


@workflow
async def forgets_to_await_groups() -> str:
    durable.map(add.run_async, [1, 2])  # no await: no branch would run
    durable.parallel(lambda: add(3, 3))
    forgotten_child(4)  # the child runs, but the parent would never see its result
    return "done"


def test_a_map_parallel_or_child_an_async_workflow_never_awaits_fails_the_run(engine):
    run = forgets_to_await_groups.start()
    with pytest.raises(WorkflowFailed) as info:
        run.result(timeout=10)
    message = info.value.error_message
    assert isinstance(info.value.cause, durable.ConfigurationError), info.value
    for call in ("durable.map()", "durable.parallel()", "child workflow 'engine.forgotten_child'"):
        assert call in message, message
    assert not any(key.startswith(("add:1:", "add:2:", "add:3:")) for key in calls), calls


@workflow
def fan_out(n: int) -> list[int]:
    first = durable.parallel(lambda: add(1, 0), lambda: add(2, 0), lambda: add(3, 0))
    second = durable.map(lambda i: add(i, 100), range(n), max_concurrency=4)
    return first + second


def test_parallel_and_map_in_sync_workflow(engine):
    assert fan_out(6) == [1, 2, 3, 100, 101, 102, 103, 104, 105]
    assert all(count == 1 for count in calls.values())
    run = fan_out.start(2)
    run.result(timeout=10)
    ids = sorted(e.op_id for e in run.events() if e.kind == "step_completed")
    assert ids == ["1.0.1", "1.1.1", "1.2.1", "2.0.1", "2.1.1"]


@step
async def async_add(a: int, b: int) -> int:
    hit(f"async_add:{a}:{b}")
    await asyncio.sleep(0.001 * (5 - a))  # later branches finish first
    return a + b


async def two_steps(i: int) -> int:
    x = await async_add(i, 20)
    return await add(x, 1)


@workflow
async def async_fan_out() -> list[int]:
    gathered = await asyncio.gather(async_add(1, 1), async_add(2, 2), add(3, 3))
    branches = await asyncio.gather(two_steps(1), two_steps(2), two_steps(3))
    mapped = await durable.map(lambda i: async_add(i, 10), [1, 2, 3])
    par = await durable.parallel(lambda: async_add(4, 4), lambda: add(5, 5))
    await durable.sleep("2 days")
    return [*gathered, *branches, *mapped, *par]


def test_async_gather_parallel_map(engine):
    run = async_fan_out.start()
    assert run.result(timeout=20) == [2, 4, 6, 22, 23, 24, 11, 12, 13, 8, 10]
    assert all(count == 1 for count in calls.values()), calls
    ids = [e.op_id for e in run.events() if e.kind == "step_completed"]
    assert sorted(ids) == sorted(
        ["1", "2", "3", "4.1", "4.2", "5.1", "5.2", "6.1", "6.2",
         "7.0.1", "7.1.1", "7.2.1", "8.0.1", "8.1.1"]
    )


async def test_awaiting_an_async_workflow_directly(engine):
    result = await async_fan_out()
    assert result[0] == 2


@workflow
def values() -> list[object]:
    a = durable.now()
    r = durable.random()
    u = durable.uuid4()
    add(1, 1)
    durable.sleep("1 day")
    return [a.isoformat(), r, str(u)]


def test_now_random_uuid_are_replay_stable(engine):
    run = values.start()
    first = run.result(timeout=10)
    recorded = [e for e in run.events() if e.kind == "value_recorded"]
    assert [e.name for e in recorded] == ["now", "random", "uuid4"]
    assert first[2] == durable._serialization.loads(recorded[2].data)


@workflow(name="values_child")
def values_child(order: str) -> str:
    return order


@workflow
def values_handed_out() -> list[str]:
    token = f"order:{durable.uuid4()}"
    hook = durable.create_hook(token=token, timeout="1h")
    child = values_child(f"for {durable.uuid4()}")
    try:
        hook.wait()
    except durable.HookTimeout:
        pass
    return [token, child]


def test_values_are_recorded_before_a_hook_or_child_hands_them_out(engine):
    # A crash after the hook's creation (or the child's start) but before the next step must not
    # let the replay draw other values than the ones the outside already has.
    run = values_handed_out.start()
    token, child = run.result(timeout=20)
    events = run.events()
    watched = ("value_recorded", "hook_created", "child_started")
    kinds = [e.kind for e in events if e.kind in watched]
    assert kinds == ["value_recorded", "hook_created", "value_recorded", "child_started"], kinds
    values = [durable._serialization.loads(e.data) for e in events if e.kind == "value_recorded"]
    assert token == f"order:{values[0]}" and child == f"for {values[1]}"


@workflow
async def gathers_returning_exceptions() -> list[object]:
    results = await asyncio.gather(durable.sleep("2 days"), add(1, 1), return_exceptions=True)
    return [repr(r) for r in results] + [await add(2, 2)]


def test_gather_returning_exceptions_does_not_swallow_a_suspension(engine):
    # The sleep suspends the run; gather(return_exceptions=True) hands the workflow the engine's
    # control flow as a value, and the run must not go on (or complete) with it.
    run = gathers_returning_exceptions.start()
    assert run.result(timeout=20) == ["None", "2", 4]
    kinds = [e.kind for e in run.events()]
    assert "sleep_started" in kinds and kinds[-1] == "run_completed", kinds
    assert calls == {"add:1:1": 1, "add:2:2": 1}


# asyncio.TaskGroup raises what its branches raise in a BaseExceptionGroup, and cancels the other
# branches as soon as one raises: a branch's suspension must still suspend the run, without
# cutting its siblings short.


async def sleeps_then_adds(i: int) -> int:
    await durable.sleep("2 days")
    return await add(i, 1)


@workflow
async def taskgroup_of_sleepers() -> list[int]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(sleeps_then_adds(i)) for i in range(3)]
    return [task.result() for task in tasks]


def test_taskgroup_branches_that_sleep_suspend_the_run_and_resume(engine):
    run = taskgroup_of_sleepers.start()
    assert run.result(timeout=20) == [1, 2, 3]
    kinds = [e.kind for e in run.events()]
    assert kinds.count("sleep_started") == 3 and kinds[-1] == "run_completed", kinds
    assert calls == {"add:0:1": 1, "add:1:1": 1, "add:2:1": 1}


def test_taskgroup_in_the_testing_world_ends_as_gather_does():
    from durable.testing import world

    with world():
        assert asyncio.run(taskgroup_of_sleepers()) == [1, 2, 3]


@workflow
async def taskgroup_of_steps() -> list[int]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(async_add(i, i)) for i in range(1, 4)]
    return [task.result() for task in tasks]


def test_taskgroup_of_steps_live_and_under_forced_replay(engine):
    # Forced replay suspends at every step: the first step to finish must not cancel the others.
    run = taskgroup_of_steps.start()
    assert run.result(timeout=20) == [2, 4, 6]
    assert calls == {"async_add:1:1": 1, "async_add:2:2": 1, "async_add:3:3": 1}
    ids = [e.op_id for e in run.events() if e.kind == "step_completed"]
    assert sorted(ids) == ["1", "2", "3"]


@workflow
async def taskgroup_hook_beside_steps() -> list[object]:
    async def waits() -> object:
        return await durable.create_hook(token="taskgroup-hook")

    async def works() -> int:
        return await async_add(1, await async_add(2, 3))

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(waits()), group.create_task(works())]
    return [task.result() for task in tasks]


def test_a_taskgroup_branch_waiting_on_a_hook_lets_its_siblings_finish_and_resumes(engine):
    engine.runtime.options.time_skipping = None
    run = taskgroup_hook_beside_steps.start()
    deadline = time.monotonic() + 10
    while True:
        # The run waits for the hook with the sibling's steps done, not cancelled.
        record = engine.world.get_run(run.id)
        done = [e for e in run.events() if e.kind == "step_completed"]
        if record.status == "suspended" and record.wake_at is None and len(done) == 2:
            break
        assert time.monotonic() < deadline, (record, run.events())
        time.sleep(0.01)
    assert [h.token for h in engine.world.list_hooks(run.id)] == ["taskgroup-hook"]
    durable.resume_hook("taskgroup-hook", "approved")
    assert run.result(timeout=20) == ["approved", 6]
    assert calls == {"async_add:2:3": 1, "async_add:1:5": 1}


def test_cancel_reaches_a_run_waiting_inside_a_taskgroup(engine):
    engine.runtime.options.time_skipping = None  # keep the run asleep
    run = taskgroup_of_sleepers.start()
    deadline = time.monotonic() + 10
    while True:
        record = engine.world.get_run(run.id)
        if record.status == "suspended" and (record.wake_at or 0) > engine.world.now() + 86400:
            break
        assert time.monotonic() < deadline, (record, run.events())
        time.sleep(0.01)
    run.cancel()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert run.status == "cancelled" and run.events()[-1].kind == "run_cancelled"
    assert calls == {}


@step(retry=RetryPolicy(max_attempts=1))
def refuses(n: int) -> int:
    hit(f"refuses:{n}")
    raise ValueError(f"no {n}")


async def sleeps(n: int) -> int:
    await durable.sleep("2 days")
    return n


@workflow
async def taskgroup_failure_beside_a_sleeper() -> int:
    async with asyncio.TaskGroup() as group:
        sleeper = group.create_task(sleeps(1))
        group.create_task(refuses(2))
    return sleeper.result()


def test_a_user_error_beside_a_suspended_taskgroup_branch_comes_after_the_suspension(engine):
    # The suspension wins; the error comes again on replay (from the log) once the sleep is over.
    run = taskgroup_failure_beside_a_sleeper.start()
    with pytest.raises(WorkflowFailed, match="TaskGroup") as failed:
        run.result(timeout=20)
    assert "ValueError: no 2" in failed.value.traceback
    events = run.events()
    slept = [e for e in events if e.kind == "sleep_started"]
    wake_at = json.loads(slept[0].data)["wake_at"]
    assert events[-1].kind == "run_failed" and events[-1].created_at >= wake_at, events
    assert calls == {"refuses:2": 1}


async def raises_at_once(n: int) -> int:
    raise ValueError(f"no {n}")


@workflow
async def catches_taskgroup_errors(suspend: bool) -> list[str]:
    caught: list[str] = []
    try:
        async with asyncio.TaskGroup() as group:
            if suspend:
                group.create_task(sleeps(1))
            group.create_task(raises_at_once(3))
            group.create_task(raises_at_once(4))
    except* ValueError as errors:
        caught = sorted(str(e) for e in errors.exceptions)
    return caught


@pytest.mark.parametrize("suspend", [False, True])
def test_except_star_around_a_taskgroup_sees_only_the_users_errors(engine, suspend):
    # Beside a suspension, the handler sees the same errors; the suspension goes on past it.
    run = catches_taskgroup_errors.start(suspend)
    assert run.result(timeout=20) == ["no 3", "no 4"]
    kinds = [e.kind for e in run.events()]
    assert kinds.count("sleep_started") == int(suspend) and kinds[-1] == "run_completed"


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=False))
async def leaks_cancellation() -> None:
    hit("leaks_cancellation")
    raise asyncio.CancelledError()  # a library's own, not a cancel of this task


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=False))
def raises_generator_exit() -> None:
    hit("raises_generator_exit")
    raise GeneratorExit()


@workflow
async def awaits_a_leaky_step() -> str:
    try:
        await leaks_cancellation()
    except durable.StepFailed as failed:
        return failed.error_type
    return "no error"


@workflow
def calls_a_generator_exit_step() -> str:
    try:
        raises_generator_exit()
    except durable.StepFailed as failed:
        return failed.error_type
    return "no error"


@pytest.mark.parametrize(
    ("flow", "name"),
    [(awaits_a_leaky_step, "leaks_cancellation"), (calls_a_generator_exit_step,
                                                   "raises_generator_exit")],
    ids=["CancelledError", "GeneratorExit"],
)
def test_a_step_raising_a_base_exception_of_its_own_fails_its_attempts(engine, flow, name):
    # Not the engine's cancellation: the step's failure, retried and recorded like any other
    # (it was re-run without end, or left the run leased for ever).
    error_type = flow.start().result(timeout=20)
    assert error_type.rsplit(".", 1)[-1] in ("CancelledError", "GeneratorExit"), error_type
    assert calls[name] == 2  # both attempts, then the workflow caught the failure


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0.0, jitter=False))
def busy_with_a_bad_hint() -> None:
    hit("busy_with_a_bad_hint")
    raise durable.RetryableError("busy", retry_after="soon")


@workflow
def retries_despite_a_bad_hint() -> str:
    try:
        busy_with_a_bad_hint()
    except durable.RetryableError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def test_an_unparsable_retry_after_keeps_the_steps_error_and_its_policy(engine):
    run = retries_despite_a_bad_hint.start()
    assert run.result(timeout=20) == "RetryableError: busy"
    assert calls["busy_with_a_bad_hint"] == 2
    [retrying] = [e for e in run.events() if e.kind == "step_retrying"]
    assert "soon" in json.loads(retrying.data)["retry_after_ignored"]


@workflow
def waits_forever() -> str:
    add(1, 1)
    durable.sleep("30 days")
    add(2, 2)
    return "finished"


def test_cancel_stops_at_next_durable_point(engine):
    engine.runtime.options.time_skipping = None  # keep the run asleep
    run = waits_forever.start()
    for _ in range(500):
        # Under forced replay a run also suspends for an instant at every step; wait for the
        # 30-day sleep.
        record = engine.world.get_run(run.id)
        if record.status == "suspended" and (record.wake_at or 0) > engine.world.now() + 86400:
            break
        threading.Event().wait(0.01)
    assert run.status == "suspended"
    assert run.cancel() is True
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert run.status == "cancelled"
    assert calls == {"add:1:1": 1}
    assert run.events()[-1].kind == "run_cancelled"
    assert run.cancel() is False  # already finished: nothing to cancel
    assert run.events()[-1].kind == "run_cancelled"


@workflow
def naps_twice() -> str:
    add(1, 1)
    durable.sleep(2.0)
    durable.sleep(6.0)
    add(2, 2)
    return "finished"


def test_cancel_from_elsewhere_during_a_short_sleep_stops_at_the_next_one(engine):
    engine.runtime.options.time_skipping = None
    engine.runtime.options.inline_wait_limit = 10.0  # both sleeps wait in-process
    run = naps_twice.start()
    wait_for_event(run, "sleep_started")
    # As another process would: the world learns of it, the executing worker is not told.
    cancelled_at = time.monotonic()
    assert cancel_run(engine.world, run.id) == "requested"
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=15)
    took = time.monotonic() - cancelled_at
    events = run.events()
    assert events[-1].kind == "run_cancelled" and calls == {"add:1:1": 1}, events
    # The first sleep ends (2 s); the second is the next durable point, where the run stops
    # rather than waiting it out too (8 s; the slack is for a busy machine).
    assert took < 6.0, f"cancelled {took:.1f}s after the request"


@workflow
def naps_a_while() -> str:
    add(1, 1)
    durable.sleep(8.0)
    add(2, 2)
    return "finished"


def test_a_cancel_in_this_process_ends_an_in_process_sleep_at_once(engine):
    engine.runtime.options.time_skipping = None
    engine.runtime.options.inline_wait_limit = 10.0  # the sleep waits in-process
    run = naps_a_while.start()
    wait_for_event(run, "sleep_started")
    cancelled_at = time.monotonic()
    run.cancel()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=15)
    took = time.monotonic() - cancelled_at
    assert calls == {"add:1:1": 1}
    assert took < 5.0, f"cancelled {took:.1f}s after the request (the sleep had 8 s to go)"


last_step_entered = threading.Event()
last_step_may_end = threading.Event()


@step(retry=RetryPolicy(max_attempts=1))
def slow_last(fail: bool) -> str:
    hit("slow_last")
    last_step_entered.set()
    assert last_step_may_end.wait(10)
    if fail:
        raise ValueError("the last step failed")
    return "done"


@workflow
def ends_with_a_slow_step(fail: bool) -> str:
    add(1, 1)
    return slow_last(fail)


@pytest.mark.parametrize(
    ("how", "fail"), [("run.cancel", False), ("elsewhere", False), ("elsewhere", True)]
)
def test_a_cancel_during_the_last_step_ends_the_run_cancelled(engine, how, fail):
    # No durable point follows the last step but the outcome: a cancellation requested before
    # it is final, whether the workflow then returns or fails (the step's result is kept).
    last_step_entered.clear()
    last_step_may_end.clear()
    run = ends_with_a_slow_step.start(fail)
    cancel_while_held(run, engine.world, how, last_step_entered, last_step_may_end)
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert run.status == "cancelled"
    assert calls == {"add:1:1": 1, "slow_last": 1}
    kinds = [e.kind for e in run.events()]
    assert kinds[-1] == "run_cancelled"
    assert "run_completed" not in kinds and "run_failed" not in kinds
    assert ("step_failed" if fail else "step_completed") in kinds[-3:]


class Opaque:
    pass


@step
def returns_opaque() -> Opaque:
    hit("opaque")
    return Opaque()


@workflow
def unserializable_result() -> str:
    try:
        returns_opaque()
    except SerializationError as exc:
        return str(exc)
    return "no error"


def test_serialization_error_at_call_site_writes_nothing(engine):
    run = unserializable_result.start()
    message = run.result(timeout=10)
    assert "Opaque" in message and "returns_opaque" in message
    assert not [e for e in run.events() if e.kind == "step_completed"]


def test_unserializable_input_fails_at_start(engine):
    with pytest.raises(SerializationError, match="input of workflow 'arithmetic'"):
        arithmetic.start(threading.Lock())
    assert engine.world.list_runs() == []


def test_arguments_that_do_not_match_fail_at_the_call_and_record_nothing(engine):
    with pytest.raises(TypeError, match=r"workflow 'arithmetic' called with arguments"):
        arithmetic.start(1, zz=2)
    # A misspelt keyword is named, not the parameter it left missing.
    with pytest.raises(TypeError, match=r"arithmetic\(x: 'int'\) .*: no parameter takes "
                       r"the keyword argument 'xx'$"):
        arithmetic.start(xx=1)
    with pytest.raises(TypeError, match="missing a required argument"):
        arithmetic()
    with pytest.raises(TypeError, match="too many positional arguments"):
        asyncio.run(timed_async(1))
    with pytest.raises(TypeError, match="run_id must be a non-empty string, got 123"):
        arithmetic.with_options(run_id=123)  # type: ignore[arg-type]
    # Ids every world stores alike: the AWS world's keys are bounded, SQLite's are not.
    with pytest.raises(ValueError, match="run_id is 3000 characters long; the most is 256"):
        arithmetic.with_options(run_id="x" * 3000)
    with pytest.raises(ValueError, match="control characters"):
        arithmetic.with_options(run_id="order\n42")
    assert engine.world.list_runs() == []
    longest = arithmetic.with_options(run_id="é" * 256).start(1)
    assert longest.result(timeout=10) == {"a": 2, "b": 12}


@workflow(name="versioned")
def versioned_v1() -> str:
    add(1, 1)
    durable.sleep("1 day")
    add(2, 2)
    return "v1"


def test_changed_code_raises_non_determinism(engine):
    engine.runtime.options.time_skipping = None
    run = versioned_v1.start()
    wait_asleep(run, engine.world, longer_than=3600)  # the day-long sleep
    before = run.events()

    # Deploy a new version of the workflow under the same name: a step was inserted.
    import durable._decorators as decorators

    original = decorators._registry["versioned"]

    def versioned_v2() -> str:
        add(1, 1)
        add(5, 5)
        durable.sleep("1 day")
        return "v2"

    decorators._registry["versioned"] = decorators.WorkflowDefinition(
        versioned_v2, "versioned", "json", False
    )
    try:
        engine.clock.advance("2 days")
        with pytest.raises(WorkflowFailed) as info:
            run.result(timeout=10)
    finally:
        decorators._registry["versioned"] = original
    assert "NonDeterminismError" in info.value.error_type
    assert "position 2" in info.value.error_message
    message = info.value.error_message
    assert "the log recorded durable.sleep(), the code now calls step 'add'" in message
    after = run.events()
    assert after[: len(before)] == before  # nothing recorded was changed
    assert isinstance(info.value.cause, NonDeterminismError)


def test_unknown_workflow_is_left_pending(engine):
    from durable.world import NewRun

    engine.world.create_run(NewRun("wrun_ghost", "ghost_workflow", b'{"args":[],"kwargs":{}}'),
                            owner=None, lease_ttl=5)
    engine.runtime.poll_once()
    record = engine.world.get_run("wrun_ghost")
    assert record is not None and record.status == "pending"


@workflow(name="dropped_by_a_deploy")
def dropped_by_a_deploy() -> str:
    durable.sleep("1h")
    return "woke"


def test_a_due_run_of_a_workflow_no_longer_deployed_is_reported(engine, caplog):
    engine.runtime.options.time_skipping = None
    run = dropped_by_a_deploy.start()
    wait_asleep(run, engine.world)
    import durable._decorators as decorators

    definition = decorators._registry.pop("dropped_by_a_deploy")
    try:
        engine.clock.advance("2h")
        engine.runtime._last_unknown_check = 0.0
        engine.runtime._report_unknown()
        # Said as the worker looks for runs it cannot execute, or (on AWS, whose wake-up
        # messages name no workflow) as it takes the run up and leaves it pending.
        said = [r.message for r in caplog.records if run.id in r.message]
        assert said and all(
            "no workflow named 'dropped_by_a_deploy' is registered" in line for line in said
        ), said
        assert engine.world.get_run(run.id).status in ("suspended", "pending", "running")
    finally:
        decorators._registry["dropped_by_a_deploy"] = definition
    engine.runtime.wake()
    assert run.result(timeout=10) == "woke"


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0))
def exits() -> None:
    hit("exits")
    raise SystemExit(3)


@workflow
def calls_a_step_that_exits() -> str:
    try:
        exits()
    except StepFailed as exc:
        return f"caught {exc.error_type}"
    return "no error"


@workflow
def exits_itself() -> None:
    raise KeyboardInterrupt


def test_system_exit_in_a_step_is_a_failed_attempt_not_a_stuck_run(engine):
    # Raised by code in a worker thread, it would end the thread silently, run still leased.
    assert calls_a_step_that_exits.start().result(timeout=20) == "caught SystemExit"
    assert calls["exits"] == 2
    with pytest.raises(WorkflowFailed, match="KeyboardInterrupt"):
        exits_itself.start().result(timeout=20)


@step(retry=RetryPolicy(max_attempts=1))
def naps_inside() -> None:
    durable.sleep("1h")


@step(retry=RetryPolicy(max_attempts=1))
def hooks_inside() -> None:
    durable.create_hook()


@workflow
def misuses_inside_steps() -> list[str]:
    seen = []
    for misuse in (naps_inside, hooks_inside):
        try:
            misuse()
        except durable.ConfigurationError as exc:
            seen.append(str(exc))
    return seen


def test_sleeping_or_creating_a_hook_inside_a_step_is_refused_with_how_to_fix_it(engine):
    # A step runs to completion: a durable sleep in it would block its thread in real time.
    napped, hooked = misuses_inside_steps.start().result(timeout=20)
    assert "inside step 'naps_inside' cannot suspend the run" in napped
    assert "time.sleep()" in napped
    assert "not inside a step (here: step 'hooks_inside')" in hooked


@workflow
def parallel_of_results() -> list[int]:
    return durable.parallel(add(1, 1), add(2, 2))  # type: ignore[arg-type]


def test_parallel_given_results_instead_of_callables_says_to_pass_callables(engine):
    expected = r"argument 1 is of type 'int': pass lambda: my_step\(x\)"
    with pytest.raises(WorkflowFailed, match=expected):
        parallel_of_results.start().result(timeout=20)


@step(name="engine.async_double")
async def async_double(n: int) -> int:
    return 2 * n


@step(name="engine.naps_inside_async", retry=RetryPolicy(max_attempts=1))
async def naps_inside_async() -> None:
    durable.sleep("1h")


@workflow(name="engine.async_misuses")
async def async_misuses() -> list[str]:
    seen = []
    try:
        await durable.parallel(async_double(1), async_double(2))  # type: ignore[arg-type]
    except TypeError as exc:
        seen.append(str(exc))
    try:
        await naps_inside_async()
    except durable.ConfigurationError as exc:
        seen.append(str(exc))
    return seen


def test_async_misuses_are_explained_for_coroutines(engine):
    given_coroutines, napped = async_misuses.start().result(timeout=20)
    assert "argument 1 is of type 'coroutine'" in given_coroutines
    assert "a coroutine, which could not run its branch beside the others" in given_coroutines
    assert "await asyncio.sleep() for a short pause" in napped


@workflow
def mapped_with(limit: object) -> list[int]:
    return durable.map(lambda x: add(x, x), [1, 2], max_concurrency=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, "2", 1.5, True])
def test_map_refuses_a_limit_that_is_not_a_whole_number_of_at_least_one(engine, limit):
    with pytest.raises(WorkflowFailed) as failed:
        mapped_with.start(limit).result(timeout=20)
    assert failed.value.error_message == (
        f"max_concurrency must be a whole number >= 1 (or None: no limit), got {limit!r}"
    )
    assert mapped_with.start(2).result(timeout=20) == [2, 4]


def test_events_decode_their_payloads_with_value(engine):
    run = arithmetic.start(1)
    assert run.result(timeout=20) == {"a": 2, "b": 12}
    values = {(e.kind, e.op_id): e.value() for e in run.events()}
    assert values[("step_completed", "1")] == 2
    assert values[("step_completed", "2")] == 12
    assert values[("run_created", None)] is None
    assert isinstance(run.events()[0], durable.Event)
