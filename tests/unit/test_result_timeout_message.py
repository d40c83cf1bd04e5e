"""A wait for a run's result that times out says what the run waits for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import durable
from durable.testing import TestWorld, world


@durable.workflow
def naps_a_week() -> int:
    durable.sleep("7 days")
    return 1


@durable.workflow
def awaits_approval_token() -> object:
    return durable.create_hook(token="approval-msg:1", timeout="1h").wait()


@pytest.fixture
def real_world() -> Iterator[TestWorld]:
    with world(time_skipping=False) as env:  # time passes only when a test moves it
        yield env


def test_a_sleeping_run_says_when_it_is_due(real_world: TestWorld) -> None:
    run = naps_a_week.start()
    with pytest.raises(TimeoutError) as caught:
        run.result(timeout=1.0)
    message = str(caught.value)
    assert f"run {run.id} is still" in message
    assert "due at" in message and "durable.testing" in message


def test_a_run_waiting_on_a_hook_names_the_token(real_world: TestWorld) -> None:
    run = awaits_approval_token.start()
    with pytest.raises(TimeoutError, match="waiting on hook 'approval-msg:1', timing out at"):
        run.result(timeout=1.0)
    durable.resume_hook("approval-msg:1", "yes")
    assert run.result(timeout=10) == "yes"



@durable.workflow(name="timeout_message.sleeps_beside_a_hook")
def sleeps_beside_a_hook() -> int:
    durable.create_hook(token="unused-msg:1")  # open, never waited on
    durable.sleep("1h")
    return 1


def test_a_run_sleeping_beside_an_open_hook_says_it_is_due_not_that_it_waits_on_the_hook(
    real_world: TestWorld,
) -> None:
    run = sleeps_beside_a_hook.start()
    with pytest.raises(TimeoutError) as caught:
        run.result(timeout=1.0)
    message = str(caught.value)
    assert "waiting on hook" not in message and "timing out" not in message, message
    assert "due at" in message and "(hook 'unused-msg:1' is open too)" in message, message
    assert "env.advance() moves its clock" in message
