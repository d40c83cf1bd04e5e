"""A NonDeterminismError names the line of workflow code whose call diverged from the log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import durable
import durable.testing
from durable import NonDeterminismError, WorkflowFailed, step, workflow

HERE = os.path.relpath(__file__)


def _at(marker: str, function: str) -> str:
    """``path:line in function`` of the line of this file ending with ``# marker``."""
    lines = Path(__file__).read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))
    return f"at {HERE}:{number} in {function}"


@step(name="where.first")
def first() -> str:
    return "first"


@step(name="where.second")
def second() -> str:
    return "second"


@workflow(name="where.flow")
def flow() -> list[str]:
    done = [first()]
    durable.sleep("1h")
    done.append(second())
    return done


@workflow(name="where.flow_async")
async def flow_async() -> list[str]:
    done = [await first()]
    await durable.sleep("1h")
    done.append(await second())
    return done


def _recorded(recorded_by: Any = flow) -> list[durable.Event]:
    with durable.testing.world() as env:
        run = recorded_by.start()
        env.wait_until_idle()
        return run.events()


def swapped() -> list[str]:
    done = [second()]  # swapped-call
    durable.sleep("1h")
    return done


def sleeps_first() -> list[str]:
    durable.sleep("1h")  # sleeps-first
    return [first()]


def _helper() -> str:
    return second()  # helper-call


def through_a_helper() -> list[str]:
    return [_helper()]


async def swapped_async() -> list[str]:
    done = [await second()]  # async-call
    return done


def ends() -> list[str]:
    return [first()]


@pytest.mark.parametrize(
    ("code", "where"),
    [
        (swapped, _at("swapped-call", "swapped")),
        (sleeps_first, _at("sleeps-first", "sleeps_first")),
        (through_a_helper, _at("helper-call", "_helper")),
        (swapped_async, _at("async-call", "swapped_async")),
    ],
    ids=["step", "sleep", "helper", "async"],
)
def test_the_error_names_the_call_that_diverged(code: Any, where: str) -> None:
    with pytest.raises(NonDeterminismError) as info:
        durable.replay(code, events=_recorded(flow_async if code is swapped_async else flow))
    assert f"at position 1, {where}:" in str(info.value), str(info.value)
    assert info.value.location == where.removeprefix("at ")


def test_a_run_failed_by_a_worker_names_the_line_too() -> None:
    with durable.testing.world() as env:
        run = flow.start()
        env.wait_until_idle()
        with durable.testing.deploy(flow, swapped):
            env.advance("2h")
            with pytest.raises(WorkflowFailed) as info:
                run.result(timeout=10)
    assert _at("swapped-call", "swapped") in info.value.error_message, info.value.error_message


def test_code_that_ended_where_the_log_goes_on_names_no_line() -> None:
    # Nothing of the workflow is on the stack then: the caller of replay() is not the place.
    with pytest.raises(NonDeterminismError) as info:
        durable.replay(ends, events=_recorded())
    assert info.value.location is None
    assert f"{HERE}:" not in str(info.value)
    assert "the code now calls nothing (the workflow returned)" in str(info.value)
