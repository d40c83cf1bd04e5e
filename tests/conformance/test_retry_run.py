"""Retrying a failed run: it goes on from where it failed, its finished steps not run again.
Every world, live and under forced replay."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import durable
import durable.dag as dag
from durable import ConfigurationError, RetryPolicy, RunNotFound, WorkflowFailed, step, workflow
from tests.exited import exited_owner

calls: Counter[str] = Counter()
_lock = threading.Lock()
outage = {"payments": True, "workflow_bug": True}


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    outage.update(payments=True, workflow_bug=True)


def _count(name: str) -> None:
    with _lock:
        calls[name] += 1


@step(name="retry_run.reserve")
def reserve(order: str) -> str:
    _count("reserve")
    return f"reserved {order}"


@step(name="retry_run.charge", retry=RetryPolicy(max_attempts=2, initial_delay=0))
def charge(order: str) -> str:
    _count("charge")
    if outage["payments"]:
        raise ConnectionError("payments api down")
    return f"charged {order}"


@workflow(name="retry_run.order")
def order(order_id: str) -> list[str]:
    return [reserve(order_id), charge(order_id)]


def test_a_failed_run_retried_goes_on_from_the_step_that_failed(engine):
    run = order.start("o-1")
    with pytest.raises(WorkflowFailed, match="payments api down"):
        run.result(timeout=10)
    assert calls == {"reserve": 1, "charge": 2}

    outage["payments"] = False
    run.retry()
    assert run.result(timeout=10) == ["reserved o-1", "charged o-1"]
    assert calls == {"reserve": 1, "charge": 3}  # the finished step was not run again
    kinds = [e.kind for e in run.events()]
    assert kinds.index("run_failed") < kinds.index("run_retried") < len(kinds) - 1
    assert kinds[-1] == "run_completed"
    assert durable.get_run(run.id).status == "completed"


def test_a_retried_run_that_fails_again_can_be_retried_again(engine):
    run = order.start("o-2")
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    run.retry()
    with pytest.raises(WorkflowFailed, match="payments api down"):
        run.result(timeout=10)
    assert calls == {"reserve": 1, "charge": 4}  # each retry: the step's attempts anew
    outage["payments"] = False
    run.retry()
    assert run.result(timeout=10) == ["reserved o-2", "charged o-2"]


@workflow(name="retry_run.buggy")
def buggy(order_id: str) -> str:
    reserved = reserve(order_id)
    if outage["workflow_bug"]:
        raise ValueError("a bug in the workflow's own code")
    return reserved


def test_a_run_failed_by_its_own_code_replays_with_the_fixed_code(engine):
    run = buggy.start("o-3")
    with pytest.raises(WorkflowFailed, match="a bug in the workflow"):
        run.result(timeout=10)
    outage["workflow_bug"] = False  # the fix is deployed
    run.retry()
    assert run.result(timeout=10) == "reserved o-3"
    assert calls == {"reserve": 1}


@workflow(name="retry_run.gives_up")
def gives_up(order_id: str) -> str:
    try:
        return charge(order_id)
    except ConnectionError:
        raise ValueError("gave up on payments") from None


def test_a_step_whose_failure_ended_the_run_runs_again_even_if_caught_and_reraised(engine):
    # Nothing was recorded after the failure: the step runs again, and the workflow goes on.
    run = gives_up.start("o-4")
    with pytest.raises(WorkflowFailed, match="gave up"):
        run.result(timeout=10)
    outage["payments"] = False
    run.retry()
    assert run.result(timeout=10) == "charged o-4"
    assert calls == {"charge": 3}


@step(name="retry_run.release")
def release(order_id: str) -> str:
    _count("release")
    return f"released {order_id}"


@workflow(name="retry_run.compensates")
def compensates(order_id: str) -> str:
    with durable.Saga() as saga:
        reserve(order_id)
        saga.add(release, order_id)
        return charge(order_id)


def test_a_run_that_compensated_is_not_retried(engine):
    run = compensates.start("o-6")
    with pytest.raises(WorkflowFailed, match="payments api down"):
        run.result(timeout=10)
    outage["payments"] = False
    with pytest.raises(ConfigurationError, match="went on after step 'retry_run.charge' failed"):
        run.retry()
    assert durable.get_run(run.id).status == "failed"  # left as it was
    assert calls == {"reserve": 1, "charge": 2, "release": 1}


@workflow(name="retry_run.batch")
def batch(orders: list[str]) -> list[str]:
    return durable.map(charge_or_reserve, orders)


def charge_or_reserve(order_id: str) -> str:
    return charge(order_id) if order_id.startswith("pay") else reserve(order_id)


def test_every_failed_branch_runs_again_and_the_others_are_kept(engine):
    run = batch.start(["pay-1", "box-1", "pay-2", "box-2"])
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    outage["payments"] = False
    run.retry()
    assert run.result(timeout=10) == ["charged pay-1", "reserved box-1", "charged pay-2",
                                      "reserved box-2"]
    assert calls == {"reserve": 2, "charge": 6}  # 2 x 2 failed attempts, then 1 each


@workflow(name="retry_run.waits")
def waits_beside_a_failure(order_id: str) -> str:
    hook = durable.create_hook(token=f"confirm:{order_id}", timeout="1h")
    charge(order_id)
    return hook.wait()


def test_a_run_that_failed_with_a_hook_open_is_not_retried(engine):
    run = waits_beside_a_failure.start("o-7")
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    with pytest.raises(ConfigurationError, match="was waiting on a hook"):
        run.retry()


def test_only_a_failed_run_can_be_retried(engine):
    outage["payments"] = False
    run = order.start("o-5")
    run.result(timeout=10)
    with pytest.raises(ConfigurationError, match="is completed: only a failed run can be retried"):
        run.retry()
    with pytest.raises(RunNotFound):
        durable.get_run("no-such-run").retry()


def test_a_run_past_its_timeout_is_not_retried(engine):
    run = order.with_options(timeout="1h").start("o-8")
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    engine.clock.advance("2h")
    with pytest.raises(ConfigurationError, match="past its timeout"):
        run.retry()
    assert durable.get_run(run.id).status == "failed"


@dag.handler("retry_run.pay")
def pay(order: str) -> str:
    _count("pay")
    if outage["payments"]:
        raise ConnectionError("payments api down")
    return f"paid {order}"


def test_a_dag_run_whose_node_failed_retries_that_node(engine):
    spec = {
        "nodes": [
            {"id": "pay", "handler": "retry_run.pay", "config": {"order": "{{ input }}"},
             "retry": {"max_attempts": 1}},
            {"id": "ship", "handler": "retry_run.pay", "dependencies": ["pay"],
             "config": {"order": "{{ pay.output }}"}},
        ]
    }
    run = dag.start(spec, "o-9")
    with pytest.raises(WorkflowFailed, match="payments api down"):
        run.result(timeout=10)
    outage["payments"] = False
    run.retry()
    assert run.result(timeout=10) == {"ship": "paid paid o-9"}
    assert calls == {"pay": 3}  # the failed attempt, then pay and ship


@workflow(name="retry_run.approval")
def approval(order: str) -> str:
    durable.create_hook(token=f"approve:{order}", timeout="1h").wait()
    return "approved"


def test_a_run_failed_by_a_hook_timeout_is_not_retried(engine):
    # Retried, it replays the timeout and fails again at once: refused, saying so.
    run = approval.start("o-1")
    with pytest.raises(WorkflowFailed, match="HookTimeout"):
        run.result(timeout=20)
    with pytest.raises(ConfigurationError, match="a hook timed out .*fail again; start a new run"):
        run.retry()
    assert run.status == "failed"


def test_a_retry_whose_retrier_died_after_reopening_the_run_is_finished_by_a_worker(engine):
    # `durable retry` reopens the run, then records run_retried: a crash in between left a run
    # whose replay raised the recorded failure again.
    run = order.start("o-9")
    with pytest.raises(WorkflowFailed):
        run.result(timeout=10)
    outage["payments"] = False
    assert engine.world.reopen(run.id, exited_owner("retrier"), 30.0) is not None
    engine.runtime.wake()
    assert run.result(timeout=10) == ["reserved o-9", "charged o-9"]
    kinds = [e.kind for e in run.events()]
    assert kinds[kinds.index("run_failed") + 1] == "run_retried", kinds
    assert calls == {"reserve": 1, "charge": 3}
