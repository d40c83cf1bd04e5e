"""durable.Saga on every world, live and under forced replay: undos run once, newest first."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import durable
from durable import (
    CompensationFailed,
    ConfigurationError,
    FatalError,
    HookTimeout,
    Saga,
    WorkflowCancelled,
    WorkflowFailed,
    step,
    workflow,
)
from tests.cancelling import HOW, cancel_while_held, wait_on_hook

seen: list[str] = []
_seen_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear():
    seen.clear()


def _note(text: str) -> str:
    with _seen_lock:
        seen.append(text)
    return text


class OutOfStock(FatalError):
    pass


@step
def do(what: str) -> str:
    return _note(f"do {what}")


@step
def undo(what: str) -> str:
    return _note(f"undo {what}")


@step
async def undo_async(what: str) -> str:
    return _note(f"undo {what}")


@step
async def do_async(what: str) -> str:
    return _note(f"do {what}")


@step
async def reserve_async(what: str) -> str:
    _note(f"try {what}")
    raise OutOfStock(f"no {what} left")


@step
def reserve(what: str) -> str:
    _note(f"try {what}")
    raise OutOfStock(f"no {what} left")


def _steps(run) -> list[tuple[str, str, str]]:
    return [(e.kind, e.op_id, e.name) for e in run.events() if e.kind.startswith("step_")]


def _assert_recorded_once(run) -> None:
    done = Counter(e.op_id for e in run.events() if e.kind in ("step_completed", "step_failed"))
    assert done and set(done.values()) == {1}, done


@workflow(name="saga_three_then_fail")
def three_then_fail() -> str:
    with Saga() as saga:
        for what in ("a", "b", "c"):
            do(what)
            saga.add(undo, what)
        reserve("d")
    return "unreachable"


def test_failure_runs_undos_newest_first_once_and_reraises(engine):
    run = three_then_fail.start()
    with pytest.raises(WorkflowFailed) as failed:
        run.result(timeout=10)
    assert failed.value.error_type.endswith("OutOfStock")
    assert isinstance(failed.value.cause, OutOfStock)
    assert seen == ["do a", "do b", "do c", "try d", "undo c", "undo b", "undo a"]
    assert _steps(run) == [
        ("step_completed", "1", "do"),
        ("step_completed", "2", "do"),
        ("step_completed", "3", "do"),
        ("step_failed", "4", "reserve"),
        ("step_completed", "5", "undo"),
        ("step_completed", "6", "undo"),
        ("step_completed", "7", "undo"),
    ]
    _assert_recorded_once(run)
    assert run.events()[-1].kind == "run_failed"


@workflow(name="saga_success")
def succeeds() -> list[str]:
    with Saga() as saga:
        first = do("a")
        saga.add(undo, "a")
        second = do("b")
        saga.add(undo, "b")
    return [first, second]


def test_no_undo_when_the_block_succeeds(engine):
    assert succeeds.start().result(timeout=10) == ["do a", "do b"]
    assert seen == ["do a", "do b"]


@workflow(name="saga_caught")
def caught() -> dict[str, object]:
    try:
        with Saga() as saga:
            do("a")
            saga.add(undo, "a")
            raise ValueError("plain workflow code failed")
    except ValueError as exc:
        return {"error": str(exc), "after": do("after")}


def test_the_error_is_raised_again_after_compensating(engine):
    run = caught.start()
    assert run.result(timeout=10) == {"error": "plain workflow code failed", "after": "do after"}
    assert seen == ["do a", "undo a", "do after"]
    assert [name for _, _, name in _steps(run)] == ["do", "undo", "do"]
    _assert_recorded_once(run)


@step(retry=durable.RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=False))
def broken_undo(what: str) -> None:
    _note(f"broken undo {what}")
    raise ConnectionError(f"cannot undo {what}")


@workflow(name="saga_undo_fails")
def undo_fails() -> str:
    try:
        with Saga() as saga:
            do("a")
            saga.add(undo, "a")
            do("b")
            saga.add(broken_undo, "b")
            do("c")
            saga.add(undo, "c")
            reserve("d")
    except CompensationFailed as exc:
        assert isinstance(exc.__cause__, OutOfStock)
        return str(exc)
    return "no error"


def test_a_failing_undo_does_not_stop_the_others(engine):
    message = undo_fails.start().result(timeout=10)
    assert message == (
        "1 undo step failed while compensating for OutOfStock: no d left: "
        "broken_undo: ConnectionError: cannot undo b"
    )
    assert seen[4:] == ["undo c", "broken undo b", "broken undo b", "undo a"]


@workflow(name="saga_hook_timeout")
def hook_timeout() -> str:
    try:
        with Saga() as saga:
            do("account")
            saga.add(undo, "account")
            hook = durable.create_hook(token="saga-verify", timeout="24h")
            do("email")
            hook.wait()
    except HookTimeout:
        return "expired"
    return "verified"


def test_hook_timeout_compensates(engine):
    run = hook_timeout.start()
    assert run.result(timeout=10) == "expired"
    assert seen == ["do account", "do email", "undo account"]
    assert _steps(run)[-1] == ("step_completed", "4", "undo")
    _assert_recorded_once(run)


@workflow(name="saga_parallel")
def parallel_branches() -> None:
    def branch(what: str, delay: float) -> None:
        do(what)
        time.sleep(delay)  # the first branch registers its undo last, in real time
        saga.add(undo, what)

    with Saga() as saga:
        do("root")
        saga.add(undo, "root")
        durable.parallel(lambda: branch("left", 0.05), lambda: branch("right", 0.0))
        do("after")
        saga.add(undo, "after")
        reserve("x")


def test_branch_registrations_compensate_in_workflow_order(engine):
    run = parallel_branches.start()
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    assert seen[-4:] == ["undo after", "undo right", "undo left", "undo root"]
    _assert_recorded_once(run)


@workflow(name="saga_explicit")
def explicit(fail: bool) -> list[str]:
    saga = Saga()
    do("a")
    saga.add(undo, "a")
    do("b")
    saga.add(broken_undo, "b")
    pending = saga.pending
    if fail:
        try:
            saga.compensate()
        except CompensationFailed as exc:
            assert exc.reason is None and exc.__cause__ is None
        saga.compensate()  # the undos were forgotten: nothing runs twice
    return [*pending, *saga.pending]


def test_compensate_explicitly(engine):
    assert explicit.start(True).result(timeout=10) == ["broken_undo", "undo"]
    assert seen == ["do a", "do b", "broken undo b", "broken undo b", "undo a"]
    seen.clear()
    assert explicit.start(False).result(timeout=10) == ["broken_undo", "undo"] * 2
    assert seen == ["do a", "do b"]


@workflow(name="saga_compensation_fails_the_run")
def compensation_fails_the_run() -> None:
    with Saga() as saga:
        saga.add(broken_undo, "x")
        raise KeyError("boom")


def test_a_run_whose_compensation_failed_reports_it(engine):
    run = compensation_fails_the_run.start()
    with pytest.raises(WorkflowFailed) as failed:
        run.result(timeout=10)
    assert failed.value.error_type == "durable.CompensationFailed"
    cause = failed.value.cause
    assert isinstance(cause, CompensationFailed)
    assert cause.failures == ["broken_undo: ConnectionError: cannot undo x"]
    assert cause.reason == "KeyError: 'boom'"
    assert "KeyError: 'boom'" in failed.value.traceback  # the original error, chained


@workflow(name="saga_async")
async def async_saga() -> str:
    try:
        async with Saga() as saga:
            await do_async("a")
            saga.add(undo, "a")  # a sync step: awaited too
            await do_async("b")
            saga.add(undo_async, "b")
            await reserve_async("c")
    except OutOfStock:
        return "rolled back"
    return "done"


def test_async_with_awaits_the_undos(engine):
    run = async_saga.start()
    assert run.result(timeout=10) == "rolled back"
    assert seen == ["do a", "do b", "try c", "undo b", "undo a"]
    assert [name for _, _, name in _steps(run)][-2:] == ["undo_async", "undo"]
    _assert_recorded_once(run)


@workflow(name="saga_async_explicit")
async def async_explicit() -> int:
    saga = Saga()
    await do_async("a")
    saga.add(undo_async, "a")
    await saga.compensate()
    return len(saga.pending)


def test_async_compensate_is_awaited(engine):
    assert async_explicit.start().result(timeout=10) == 0
    assert seen == ["do a", "undo a"]


@workflow(name="saga_sync_with_in_async")
async def sync_with_in_async() -> str:
    try:
        with Saga():
            pass
    except ConfigurationError as exc:
        return str(exc)
    return "accepted"


def test_sync_with_in_an_async_workflow_is_a_clear_error(engine):
    assert "async with durable.Saga()" in sync_with_in_async.start().result(timeout=10)


def test_undo_must_be_a_step():
    with pytest.raises(ConfigurationError, match="decorate it with @durable.step"):
        Saga().add(print, "not durable")


def test_outside_workflows_undos_are_plain_calls():
    with pytest.raises(OutOfStock):
        with Saga() as saga:
            do("a")
            saga.add(undo, "a")
            reserve("b")
    assert seen == ["do a", "try b", "undo a"]


gate = threading.Event()
entered = threading.Event()


@step
def wait_for_gate() -> str:
    entered.set()
    gate.wait(10)
    return _note("gate passed")


@workflow(name="saga_cancelled")
def cancelled_saga() -> str:
    with Saga() as saga:
        do("a")
        saga.add(undo, "a")
        wait_for_gate()
        saga.add(undo, "gate")
        do("b")  # the cancellation is noticed here
    return "not cancelled"


def test_cancellation_compensates_then_the_run_ends_cancelled(engine, request):
    engine.runtime.options.time_skipping = None
    gate.clear()
    entered.clear()
    run = cancelled_saga.start()
    assert entered.wait(10)
    run.cancel()
    gate.set()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert seen == ["do a", "gate passed", "undo gate", "undo a"]
    assert [name for _, _, name in _steps(run)] == ["do", "wait_for_gate", "undo", "undo"]
    _assert_recorded_once(run)
    assert run.events()[-1].kind == "run_cancelled"


@workflow(name="saga_cancelled_in_its_last_step")
def cancelled_in_the_saga_s_last_step() -> str:
    with Saga() as saga:
        do("a")
        saga.add(undo, "a")
        wait_for_gate()  # the block's last step: no durable point follows inside it
        saga.add(undo, "gate")
    do("after the saga")
    return "not cancelled"


@pytest.mark.parametrize("how", HOW)
def test_a_cancel_during_the_saga_s_last_step_still_compensates(engine, how):
    # The block ends with no durable point after its last step: it asks whether the run was
    # cancelled meanwhile, and undoes its work rather than keep it in a cancelled run.
    engine.runtime.options.time_skipping = None
    gate.clear()
    entered.clear()
    run = cancelled_in_the_saga_s_last_step.start()
    cancel_while_held(run, engine.world, how, entered, gate)
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert seen == ["do a", "gate passed", "undo gate", "undo a"]
    _assert_recorded_once(run)
    assert run.events()[-1].kind == "run_cancelled"


@workflow(name="saga_then_a_long_sleep")
def saga_then_a_long_sleep() -> str:
    with Saga() as saga:
        do("a")
        saga.add(undo, "a")
    durable.sleep("30 days")
    do("b")
    return "not cancelled"


def test_a_cancel_after_the_saga_block_ended_undoes_nothing_on_replay(engine):
    # The block ended before the cancel came: replaying it (a worker records the cancellation
    # at the sleep) keeps its work, as leaving a block does.
    engine.runtime.options.time_skipping = None
    run = saga_then_a_long_sleep.start()
    deadline = time.monotonic() + 10
    while not (run.status == "suspended" and any(
        e.kind == "sleep_started" for e in run.events()
    )):
        assert time.monotonic() < deadline, run.status
        time.sleep(0.01)
    run.cancel()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert seen == ["do a"]
    assert run.events()[-1].kind == "run_cancelled"


@workflow(name="saga_cancel_while_waiting")
def cancel_while_waiting() -> str:
    with Saga() as saga:
        do("account")
        saga.add(undo, "account")
        durable.create_hook(token="verify-cancel").wait()
    return "verified"


def test_cancelling_a_run_asleep_on_a_hook_runs_its_undos(engine):
    engine.runtime.options.time_skipping = None
    run = cancel_while_waiting.start()
    wait_on_hook(run, engine.world)
    run.cancel()
    with pytest.raises(durable.WorkflowCancelled):
        run.result(timeout=10)
    undone = [e.name for e in run.events() if e.kind == "step_completed"]
    assert undone == ["do", "undo"]
    with pytest.raises(durable.HookNotFound):
        durable.resume_hook("verify-cancel", "late")


@step(name="saga.refund_fails", retry=durable.RetryPolicy(max_attempts=1))
def refund_fails(what: str) -> str:
    _note(f"refund {what} attempted")
    raise RuntimeError("refund api down")


@workflow(name="saga_cancel_with_a_failing_undo")
def cancel_with_a_failing_undo() -> str:
    with Saga() as saga:
        do("charge")
        saga.add(refund_fails, "charge")
        do("reserve")
        saga.add(undo, "reserve")
        durable.create_hook(token="approve-refund").wait()
    return "approved"


def test_a_cancelled_run_whose_undo_failed_says_so(engine):
    engine.runtime.options.time_skipping = None
    run = cancel_with_a_failing_undo.start()
    wait_on_hook(run, engine.world)
    run.cancel()
    with pytest.raises(WorkflowCancelled) as raised:
        run.result(timeout=10)
    expected = ["saga.refund_fails: RuntimeError: refund api down"]
    assert raised.value.undo_failures == expected
    assert "undo steps failed" in str(raised.value) and "refund api down" in str(raised.value)
    assert seen == ["do charge", "do reserve", "undo reserve", "refund charge attempted"]
    # Read back from the world, by any process.
    with pytest.raises(WorkflowCancelled) as again:
        durable.get_run(run.id).result()
    assert again.value.undo_failures == expected
    assert not isinstance(again.value, durable.WorkflowTimedOut)


def test_a_cancelled_run_whose_undos_all_ran_lists_no_failures(engine):
    engine.runtime.options.time_skipping = None
    run = cancel_while_waiting.start()
    wait_on_hook(run, engine.world)
    run.cancel()
    with pytest.raises(WorkflowCancelled) as raised:
        run.result(timeout=10)
    assert raised.value.undo_failures == []
    assert str(raised.value) == f"run {run.id} was cancelled"
