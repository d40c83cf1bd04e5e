"""``max_run_days`` on the AWS world (moto server, real boto3): a run's log expires after it, so
a wait that would outlast it is refused where it is made, and a run whose log expired fails
saying so instead of replaying what is left.
"""

from __future__ import annotations

from typing import Any

import pytest

import durable
from durable import InvalidDuration, RetryableError, WorkflowFailed, step, workflow
from durable.world import NewEvent, run_lifetime
from tests.aws_server import REGION, open_aws_world, running
from tests.system._support import wait_until
from worlds.memory import MemoryWorld

boto3 = pytest.importorskip("boto3")


@workflow(name="aws_lifetime.sleeper")
def sleeper(duration: str) -> str:
    try:
        durable.sleep(duration)
    except InvalidDuration as refused:
        return f"refused: {refused}"
    return "slept"


@workflow(name="aws_lifetime.waiter")
def waiter(timeout: str) -> str:
    try:
        durable.create_hook(timeout=timeout)
    except InvalidDuration as refused:
        return f"refused: {refused}"
    return "hooked"


@step(retry=durable.RetryPolicy(max_attempts=3))
def flaky() -> str:
    raise RetryableError("come back later", retry_after="3 days")


@workflow(name="aws_lifetime.retrier")
def retrier() -> str:
    try:
        return flaky()
    except InvalidDuration as refused:
        return f"refused: {refused}"


@step
def add_one(n: int) -> int:
    return n + 1


@workflow(name="aws_lifetime.counter")
def counter(n: int) -> int:
    n = add_one(n)
    durable.sleep("1s")
    return add_one(n)


def assert_refused(outcome: str, what: str) -> None:
    assert outcome.startswith(f"refused: {what} would wake run "), outcome
    assert "after its log expires" in outcome
    assert "max_run_days = 2 days" in outcome and "durable bootstrap --max-run-days N" in outcome


@pytest.mark.parametrize(
    ("wf", "argument", "what", "recorded"),
    [
        (sleeper, "3 days", "durable.sleep()", "sleep_started"),
        (waiter, "3 days", "create_hook(timeout='3 days')", "hook_created"),
        (retrier, None, "retrying step 'flaky' in 259200 s", "step_retrying"),
    ],
)
def test_a_wait_past_max_run_days_is_refused_where_it_is_made(
    moto_endpoint: str, wf: Any, argument: str | None, what: str, recorded: str
) -> None:
    world = open_aws_world(moto_endpoint, max_run_days=2)
    with running(world):
        run = wf.start(argument) if argument is not None else wf.start()
        assert_refused(run.result(timeout=20), what)
        assert recorded not in [e.kind for e in run.events()]  # nothing of the wait recorded


def test_waits_within_max_run_days_are_kept(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint, max_run_days=2)
    with running(world):
        assert sleeper("1s") == "slept"
    assert run_lifetime(MemoryWorld("memory://")) is None  # other worlds have no such limit


def test_a_run_whose_log_expired_fails_saying_so(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint, max_run_days=2)
    with running(world, worker=False):
        run = counter.with_options(execute=False).start(1)
    world = open_aws_world(moto_endpoint, config=world.config)
    assert world.acquire(run.id, "A", 30) is not None
    world.append(run.id, "A", [NewEvent("step_completed", "1", "add_one", b"2")])
    world.release(run.id, "A")
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    for sk in ("e#000000000001", "e#000000000002"):  # as DynamoDB's TTL removes them
        client.delete_item(
            TableName=world.config.table, Key={"pk": {"S": f"run#{run.id}"}, "sk": {"S": sk}}
        )

    with running(world) as runtime:
        runtime.ensure_worker()
        wait_until(lambda: run.status == "failed", 20, "the run to fail")
        with pytest.raises(WorkflowFailed, match=r"this run's log expired \(max_run_days = 2\)"):
            run.result(timeout=5)
        assert runtime.fatal_error is None
