"""Retention on the AWS world: the TTL attributes finished runs' items carry, and gc."""

from __future__ import annotations

import boto3
import pytest

from durable._errors import WorldError
from durable.world import NewEvent, NewRun, RunUpdate
from tests.aws_server import REGION, create_world_resources, open_aws_world
from worlds.aws import AwsConfig, AwsWorld

DAY = 86_400


def items_of(world: AwsWorld, run_id: str) -> dict[str, dict]:
    client = boto3.client("dynamodb", endpoint_url=world.config.endpoint_url, region_name=REGION)
    found = client.query(
        TableName=world.config.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"run#{run_id}"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: item for item in found}


def test_finished_runs_items_expire_after_the_retention(moto_endpoint: str) -> None:
    clock = [1_800_000_000.0]
    world = open_aws_world(moto_endpoint, clock=lambda: clock[0], retention_days=7,
                           max_run_days=100)
    world.create_run(NewRun("r1", "wf", b"in"), owner="A", lease_ttl=30)
    world.append("r1", "A", [NewEvent("step_completed", "1", "s", b"x")])
    items = items_of(world, "r1")
    assert "expires_at" not in items["run"]  # a live run never expires
    for sk in ("in", "e#000000000001", "e#000000000002"):
        assert int(items[sk]["expires_at"]["N"]) == int(clock[0] + (100 + 7) * DAY)
    clock[0] += 50 * DAY
    world.append("r1", "A", [NewEvent("run_completed")],
                 RunUpdate("completed", output=b"out", release=True))
    items = items_of(world, "r1")
    assert int(items["run"]["expires_at"]["N"]) == int(clock[0] + 7 * DAY)
    assert int(items["out"]["expires_at"]["N"]) == int(clock[0] + 7 * DAY)
    assert world.get_run("r1").output == b"out"
    world.close()


def test_a_reopened_run_does_not_expire_while_it_runs_again(moto_endpoint: str) -> None:
    clock = [1_800_000_000.0]
    world = open_aws_world(moto_endpoint, clock=lambda: clock[0], retention_days=7)
    world.create_run(NewRun("r1", "wf", b"in"), owner="A", lease_ttl=30)
    world.append("r1", "A", [NewEvent("run_failed")],
                 RunUpdate("failed", error=b"boom", release=True))
    assert "expires_at" in items_of(world, "r1")["run"]
    clock[0] += 3 * DAY
    reopened = world.reopen("r1", "B", 30)
    assert reopened is not None and reopened.error is None
    items = items_of(world, "r1")
    assert "expires_at" not in items["run"] and "out" not in items  # no TTL, no stale error
    record = world.get_run("r1")
    assert record is not None and record.status == "running" and record.error is None
    world.close()


def test_a_finished_child_outlives_any_parent(moto_endpoint: str) -> None:
    # The parent's replay reads the child's outcome: it stays while a parent may still run.
    clock = [1_800_000_000.0]
    world = open_aws_world(moto_endpoint, clock=lambda: clock[0], retention_days=7,
                           max_run_days=100)
    world.create_run(NewRun("kid", "wf", b"in", parent_id="parent"), owner="A", lease_ttl=30)
    world.append("kid", "A", [NewEvent("run_completed")],
                 RunUpdate("completed", output=b"out", release=True))
    items = items_of(world, "kid")
    assert int(items["run"]["expires_at"]["N"]) == int(clock[0] + (100 + 7) * DAY)
    assert int(items["out"]["expires_at"]["N"]) == int(clock[0] + (100 + 7) * DAY)
    world.close()


def test_gc_removes_finished_runs_with_their_items_and_payloads(moto_endpoint: str) -> None:
    clock = [1_800_000_000.0]
    world = open_aws_world(moto_endpoint, clock=lambda: clock[0], payload_threshold=16)
    big = b"x" * 1000
    for run_id in ("old", "new", "live"):
        world.create_run(NewRun(run_id, "wf", big), owner="A", lease_ttl=30)
        world.append(run_id, "A", [NewEvent("step_completed", "1", "s", big)])
    world.append("old", "A", [NewEvent("run_completed")], RunUpdate("completed", release=True))
    clock[0] += 10 * DAY
    world.append("new", "A", [NewEvent("run_completed")], RunUpdate("completed", release=True))
    assert world.delete_runs(clock[0] - DAY) == 1
    assert world.get_run("old") is None and items_of(world, "old") == {}
    assert world.get_run("new") is not None and world.get_run("live") is not None
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=world.config.bucket).get("Contents", [])]
    assert keys and not any("/old/" in key for key in keys)
    assert any("/new/" in key for key in keys)
    assert [e.kind for e in world.read_events("new")][-1] == "run_completed"
    assert world.read_events("new")[1].data == big
    world.close()


def test_missing_resources_name_the_fix(moto_endpoint: str) -> None:
    config = AwsConfig(prefix="never-bootstrapped", region=REGION, endpoint_url=moto_endpoint)
    world = AwsWorld(config=config)
    with pytest.raises(WorldError, match="durable bootstrap"):
        world.get_run("r1")
    world.close()


def test_a_second_handle_sees_the_same_runs(moto_endpoint: str) -> None:
    config = create_world_resources(moto_endpoint)
    first = open_aws_world(moto_endpoint, config=config)
    first.create_run(NewRun("r1", "wf", b"in"), owner=None, lease_ttl=30)
    second = open_aws_world(moto_endpoint, config=config)
    [claimed] = second.claim_due("B", 30, 10)
    assert claimed.id == "r1" and claimed.input == b"in"
    assert first.get_run("r1").lease_owner == "B"
    first.close()
    second.close()
