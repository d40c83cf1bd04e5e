"""How a cancelled DynamoDB transaction is told apart: a failed condition, a passing collision or
throttling (retried, then a transient error), or a request DynamoDB refuses (raised at once).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from durable._errors import WorldError
from durable.world import NewRun
from tests.aws_server import REGION, create_world_resources

boto3 = pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402

from worlds.aws import AwsWorld, _transact  # noqa: E402
from worlds.aws._transact import Transaction  # noqa: E402


def test_a_table_with_another_key_schema_is_refused_at_once(moto_endpoint: str) -> None:
    config = create_world_resources(moto_endpoint)
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    client.delete_table(TableName=config.table)
    client.create_table(
        TableName=config.table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    world = AwsWorld("aws://", config=config)
    started = time.monotonic()
    with pytest.raises(WorldError) as refused:
        world.create_run(NewRun("r1", "wf", b"in"), owner=None, lease_ttl=30)
    assert time.monotonic() - started < 1.0  # not retried as if it were a collision
    message = str(refused.value)
    assert not refused.value.transient
    assert "DynamoDB refused the transaction while creating run r1" in message
    assert "durable bootstrap" in message
    assert "colliding" not in message and "_Conflict" not in message
    world.close()


class CancellingDynamo:
    """Stands in for the boto3 DynamoDB client only to hand ``Transaction.commit`` the
    ``TransactionCanceledException`` reasons moto never produces (throttling, conflicts,
    validation), built as botocore builds them: each call cancels with the next reason list
    and, once they are used up, writes; with ``forever`` the last list comes back every time.
    """

    def __init__(self, *cancellations: list[tuple[str, str]], forever: bool = False) -> None:
        self.cancellations = list(cancellations)
        self.forever = forever
        self.calls = 0

    def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if not self.cancellations:
            return {}
        keep = self.forever and len(self.cancellations) == 1
        reasons = self.cancellations[0] if keep else self.cancellations.pop(0)
        codes = ", ".join(code for code, _ in reasons)
        raise ClientError(
            {
                "Error": {
                    "Code": "TransactionCanceledException",
                    "Message": "Transaction cancelled, please refer cancellation reasons for "
                    f"specific reasons [{codes}]",
                },
                "CancellationReasons": [
                    {"Code": code, **({"Message": message} if message else {})}
                    for code, message in reasons
                ],
            },
            "TransactWriteItems",
        )


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff sleeps of ``commit``, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(_transact.time, "sleep", slept.append)
    return slept


def commit(client: CancellingDynamo) -> int | None:
    tx = Transaction(client, "t-runs")
    tx.put({"pk": {"S": "run#r1"}, "sk": {"S": "run"}}, "attribute_not_exists(pk)")
    tx.put({"pk": {"S": "run#r1"}, "sk": {"S": "e#1"}})
    return tx.commit("appending to run r1")


def test_throttling_and_conflicts_are_retried_with_backoff(waits: list[float]) -> None:
    client = CancellingDynamo(
        [("None", ""), ("ThrottlingError", "Throughput exceeds the current capacity")],
        [("TransactionConflict", "Transaction is ongoing for the item"), ("None", "")],
        [("ProvisionedThroughputExceeded", "")],
    )
    assert commit(client) is None
    assert client.calls == 4 and len(waits) == 3


def test_endless_throttling_ends_in_a_transient_error(waits: list[float]) -> None:
    client = CancellingDynamo(
        [("ThrottlingError", "Throughput exceeds the current capacity")], forever=True
    )
    with pytest.raises(WorldError) as gave_up:
        commit(client)
    assert gave_up.value.transient  # a worker backs off and goes on, it does not stop
    message = str(gave_up.value)
    assert "ThrottlingError: Throughput exceeds the current capacity" in message
    assert "appending to run r1" in message and "_" + "Conflict" not in message
    assert client.calls == 10
    assert 0 < sum(waits) <= 6.0


def test_a_validation_error_is_raised_at_once_with_dynamodbs_message(
    waits: list[float],
) -> None:
    said = "Item size has exceeded the maximum allowed size"
    client = CancellingDynamo([("None", ""), ("ValidationError", said)])
    with pytest.raises(WorldError) as refused:
        commit(client)
    assert client.calls == 1 and waits == []
    assert not refused.value.transient
    assert f"item 2: ValidationError: {said}" in str(refused.value)


def test_a_failed_condition_names_its_item(waits: list[float]) -> None:
    client = CancellingDynamo([("None", ""), ("ConditionalCheckFailed", "The condition failed")])
    assert commit(client) == 1
    assert client.calls == 1
