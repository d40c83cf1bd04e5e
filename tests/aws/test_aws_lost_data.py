"""Runs whose stored data is gone (S3 payloads removed by hand or by the lifecycle rule, items
expired by TTL), on a moto server through real boto3 (nothing patched).

One such run must not stop the workers or the CLI: listing, status, cancel and gc never read
payload bodies, and a worker fails the run with a message that names what is gone and goes
on with the others.
"""

from __future__ import annotations

import pytest

from durable import WorkflowFailed, step, workflow
from durable._errors import RunDataLost
from durable._run import cancel_run
from durable.world import NewEvent, NewRun, RunUpdate
from tests.aws_server import REGION, open_aws_world, running

boto3 = pytest.importorskip("boto3")

from tests.system._support import wait_until  # noqa: E402
from worlds.aws import AwsWorld  # noqa: E402

BIG = 4096
"""Bytes of an input that goes to S3 (the worlds here keep at most 1 KiB inline)."""


def s3_keys(world: AwsWorld, run_id: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=world.config.endpoint_url, region_name=REGION)
    prefix = world.payloads.key_prefix(run_id)
    found = s3.list_objects_v2(Bucket=world.config.bucket, Prefix=prefix).get("Contents", [])
    return [str(o["Key"]) for o in found]


def delete_payloads(world: AwsWorld, run_id: str) -> list[str]:
    """Remove a run's S3 payloads as a lifecycle rule (or a hand) would."""
    keys = s3_keys(world, run_id)
    assert keys, f"run {run_id} has nothing in S3"
    s3 = boto3.client("s3", endpoint_url=world.config.endpoint_url, region_name=REGION)
    for key in keys:
        s3.delete_object(Bucket=world.config.bucket, Key=key)
    return keys


def delete_item(world: AwsWorld, run_id: str, sk: str) -> None:
    """Remove one item of a run as DynamoDB's TTL would."""
    client = boto3.client("dynamodb", endpoint_url=world.config.endpoint_url, region_name=REGION)
    client.delete_item(
        TableName=world.config.table, Key={"pk": {"S": f"run#{run_id}"}, "sk": {"S": sk}}
    )


@step
def measure(text: str) -> int:
    return len(text)


@workflow(name="aws_lost.count")
def count(text: str) -> int:
    return measure(text)


def test_listing_status_cancel_and_gc_never_read_a_missing_payload(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint, payload_threshold=1024)
    world.create_run(NewRun("lost", "wf", b"i" * BIG), owner=None, lease_ttl=30)
    world.create_run(NewRun("done", "wf", b"in"), owner="A", lease_ttl=30)
    world.append("done", "A", [NewEvent("run_completed")],
                 RunUpdate("completed", output=b"o" * BIG, release=True))
    [key] = delete_payloads(world, "lost")
    delete_payloads(world, "done")

    assert world.get_run("lost").status == "pending"
    assert {r.id: r.status for r in world.list_runs()} == {"lost": "pending", "done": "completed"}
    assert world.count_runs() == {"pending": 1, "completed": 1}
    # Only what needs the bytes fails, and it says what is gone and why.
    with pytest.raises(RunDataLost, match="expired") as lost:
        _ = world.get_run("lost").input
    assert f"s3://{world.config.bucket}/{key}" in str(lost.value)
    assert "run lost" in str(lost.value) and "--max-run-days" in str(lost.value)
    with pytest.raises(RunDataLost):
        _ = world.get_run("done").output

    # A worker still leases it (its input is read only when the run executes).
    [claimed] = world.claim_due("B", 30, 10)
    assert claimed.id == "lost" and claimed.last_seq == 1
    world.release("lost", "B")
    assert cancel_run(world, "lost", force=True) == "cancelled"
    assert world.get_run("lost").status == "cancelled"
    assert world.delete_runs(world.now() + 1) == 2
    assert world.list_runs() == []
    world.close()


def test_a_worker_fails_a_run_whose_input_is_gone_and_goes_on(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint, payload_threshold=1024)
    with running(world, worker=False):
        broken = count.with_options(execute=False).start("x" * BIG)
        fine = [count.with_options(execute=False).start("y" * n) for n in (3, BIG)]
    [key] = delete_payloads(world, broken.id)

    world = open_aws_world(moto_endpoint, config=world.config)
    with running(world) as runtime:
        runtime.ensure_worker()
        assert [run.result(timeout=20) for run in fine] == [3, BIG]
        wait_until(lambda: broken.status == "failed", 20, "the broken run to fail")
        with pytest.raises(WorkflowFailed) as failed:
            broken.result(timeout=5)
        assert runtime.fatal_error is None
    message = str(failed.value)
    assert "RunDataLost" in failed.value.error_type
    assert f"s3://{world.config.bucket}/{key}" in message and "expired" in message


def test_a_run_whose_input_item_expired_fails_clearly(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint)
    with running(world, worker=False):
        run = count.with_options(execute=False).start("abc")
    delete_item(world, run.id, "in")

    world = open_aws_world(moto_endpoint, config=world.config)
    with running(world) as runtime:
        runtime.ensure_worker()
        wait_until(lambda: run.status == "failed", 20, "the run to fail")
        with pytest.raises(WorkflowFailed, match="input of run .* is gone: this run's log expired"):
            run.result(timeout=5)
        assert runtime.fatal_error is None


def test_a_run_whose_step_result_is_gone_fails_clearly(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint, payload_threshold=1024)
    with running(world, worker=False):
        run = count.with_options(execute=False).start("abc")
    world = open_aws_world(moto_endpoint, config=world.config)
    assert world.acquire(run.id, "A", 30) is not None
    world.append(run.id, "A", [NewEvent("step_completed", "1", "measure", b"r" * BIG)])
    world.release(run.id, "A")
    [key] = delete_payloads(world, run.id)

    with running(world) as runtime:
        runtime.ensure_worker()
        wait_until(lambda: run.status == "failed", 20, "the run to fail")
        with pytest.raises(WorkflowFailed) as failed:
            run.result(timeout=5)
        assert runtime.fatal_error is None
    assert f"s3://{world.config.bucket}/{key} of run {run.id} is missing" in str(failed.value)
