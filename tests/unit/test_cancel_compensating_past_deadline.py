"""A run cancelled before its deadline ends cancelled, although its undo steps run past it."""

from __future__ import annotations

import pytest

import durable
import durable.testing

undo_attempts: list[int] = []


@durable.step
def late_undo_reserve(item: str) -> str:
    return f"reserved {item}"


@durable.step(retry=durable.RetryPolicy(max_attempts=3, jitter=False))
def late_undo_release(item: str) -> str:
    undo_attempts.append(durable.step_info().attempt)
    if durable.step_info().attempt == 1:
        # The undo waits two hours to try again: past the run's one-hour timeout.
        raise durable.RetryableError("warehouse busy", retry_after="2 hours")
    return f"released {item}"


@durable.workflow(name="late_undo_order")
def late_undo_order(item: str) -> str:
    with durable.Saga() as saga:
        late_undo_reserve(item)
        saga.add(late_undo_release, item)
        hook = durable.create_hook(token=f"late-undo:{item}")
        return str(hook.wait())


def test_a_cancel_before_the_deadline_ends_cancelled_with_its_undo_steps_recorded():
    undo_attempts.clear()
    with durable.testing.world() as env:
        run = late_undo_order.with_options(timeout="1 hour").start("desk")
        assert env.wait_until_idle()
        assert run.status == "suspended"  # waiting on its hook, well before its deadline
        run.cancel()
        # The undo waits in-process for its retry, due after the deadline: jump past it.
        env.advance("3 hours", wait=0.5)
        with pytest.raises(durable.WorkflowCancelled) as info:
            run.result(timeout=30)
        assert type(info.value) is durable.WorkflowCancelled, info.value  # not WorkflowTimedOut
        assert run.status == "cancelled"
        assert undo_attempts == [1, 2]
        assert env.now() - env.started_at >= 2 * 3600  # the undo did run past the deadline
        undone = [e for e in run.events() if e.name == "late_undo_release"]
        assert [e.kind for e in undone] == ["step_retrying", "step_completed"]
        assert durable.get_run(run.id).status == "cancelled"
