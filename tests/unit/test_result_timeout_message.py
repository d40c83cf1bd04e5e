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

