"""A run recorded with a patch, replayed by older code that lacks it (a rolling deploy).

The usual advice for a divergence (add ``if durable.patched(...)``) is wrong there: the code
that recorded the run has that call. The error says what happened and what to do instead.
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
import durable.testing
from durable import NonDeterminismError, WorkflowFailed, step, workflow

ORDER = "older_code.order"


@step(name="older_code.reserve")
def reserve() -> str:
    return "reserved"


@step(name="older_code.charge")
def charge() -> str:
    return "charged"


@workflow(name=ORDER)
def order() -> list[str]:
    """The new code: it stopped charging, behind a patch."""
    done = [reserve()]
    if not durable.patched("drop-charge"):
        done.append(charge())
    durable.sleep("1h")
    return done


def order_older() -> list[str]:
    """The code before the patch, as a worker not yet redeployed runs it."""
    done = [reserve(), charge()]
    durable.sleep("1h")
    return done


def order_older_ends() -> list[str]:
    """Older code still, which ended where the new code records the patch."""
    return [reserve()]


def _fails_on_older_code(older: Any) -> tuple[str, str, NonDeterminismError]:
    with durable.testing.world() as env:
        run = order.start()
        env.wait_until_idle()
        assert run.status == "suspended"
        events = run.events()
        with durable.testing.deploy(order, older):
            env.advance("2h")
            with pytest.raises(WorkflowFailed) as info:
                run.result(timeout=10)
        assert isinstance(info.value.cause, NonDeterminismError), info.value
        with pytest.raises(NonDeterminismError) as replayed:
            durable.replay(older, events=events)
        return run.id, info.value.error_message, replayed.value


@pytest.mark.parametrize("older", [order_older, order_older_ends], ids=["calls-other", "ends"])
def test_a_patch_marker_met_by_older_code_says_older_code_replays_the_run(older: Any) -> None:
    run_id, message, replayed = _fails_on_older_code(older)
    assert "the log recorded durable.patched('drop-charge')" in message, message
    assert "a worker runs code older than the one that recorded the run" in message, message
    assert f"stop workers running older code, then `durable retry {run_id}`" in message, message
    # The same from a pure replay, which knows no run to retry.
    assert replayed.patch_id == "drop-charge"
    assert "stop workers running older code, then `durable retry RUN_ID`" in str(replayed)


def test_a_divergence_at_anything_but_a_patch_marker_says_nothing_of_older_code() -> None:
    with durable.testing.world() as env:
        run = order.start()
        env.wait_until_idle()
        events = run.events()

    def reordered() -> list[str]:
        durable.sleep("1h")
        return [reserve()]

    with pytest.raises(NonDeterminismError) as info:
        durable.replay(reordered, events=events)
    assert info.value.patch_id is None
    assert "older code" not in str(info.value)
    assert "if durable.patched(" in str(info.value)
