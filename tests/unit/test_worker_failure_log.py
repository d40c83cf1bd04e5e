"""A worker says in its log which runs it failed: nobody waits on its executions.

A direct call raises the error to its caller instead, so it logs nothing.
"""

from __future__ import annotations

import logging
import time

import pytest

import durable
import durable.testing
from durable import WorkflowCancelled, WorkflowFailed, step, workflow


@step(name="worker_log.explode", retry=durable.RetryPolicy(max_attempts=1))
def explode(n: int) -> int:
    raise ValueError(f"bad input {n}\nsecond line of the message")


@workflow(name="worker_log.fails")
def fails(n: int) -> int:
    return explode(n)


@workflow(name="worker_log.overruns")
def overruns() -> str:
    durable.sleep("1h")
    return "late"


@workflow(name="worker_log.waits")
def waits() -> str:
    durable.sleep("1 day")
    return "woke"


def _lines(caplog: pytest.LogCaptureFixture, run_id: str, wait: float = 0.0) -> list[str]:
    # The line is written as the execution ends, which may be just after the run's result is.
    deadline = time.monotonic() + wait
    while True:
        found = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and run_id in r.getMessage()
        ]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def test_a_run_failed_in_a_worker_execution_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="durable"), durable.testing.world():
        run = fails.start(7)
        with pytest.raises(WorkflowFailed):
            run.result(timeout=10)
        lines = _lines(caplog, run.id, wait=5.0)
        time.sleep(0.05)
        lines = _lines(caplog, run.id)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "worker_log.fails" in line and "failed" in line, line
    assert "StepFailed" in line or "ValueError" in line, line
    assert "bad input 7" in line and "second line" not in line, line
    assert f"`durable inspect {run.id}`" in line, line


def test_a_run_cancelled_by_its_timeout_is_logged_and_one_cancelled_on_purpose_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="durable"), durable.testing.world() as env:
        late = overruns.with_options(timeout="1 minute").start()
        with pytest.raises(WorkflowCancelled):
            late.result(timeout=10)
        asleep = waits.start()
        env.wait_until_idle()
        asleep.cancel()
        with pytest.raises(WorkflowCancelled):
            asleep.result(timeout=10)
        timed_out = _lines(caplog, late.id, wait=5.0)
        time.sleep(0.05)
        cancelled = _lines(caplog, asleep.id)
    assert len(timed_out) == 1 and "timed out: WorkflowTimedOut" in timed_out[0], timed_out
    assert f"`durable inspect {late.id}`" in timed_out[0]
    assert cancelled == []


def test_a_direct_call_raises_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="durable"), durable.testing.world():
        with pytest.raises(Exception, match="bad input 3"):
            fails(3)
        time.sleep(0.1)
    assert not [r for r in caplog.records if "durable inspect" in r.getMessage()]
