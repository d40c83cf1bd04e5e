"""The DynamoDB table's layout: one table, items keyed by ``pk``/``sk``, two sparse indexes.

=====================  ==================  ======================================================
item                   pk                  sk
=====================  ==================  ======================================================
run record             ``run#<id>``        ``run`` (small: status, lease, ``seq``, ``rev``)
run input              ``run#<id>``        ``in`` (written once, so steps never rewrite it)
run output or error    ``run#<id>``        ``out`` (written when the run finishes)
event ``n`` of a run   ``run#<id>``        ``e#<n, 12 digits>`` (the log reads as one Query)
stream of a run        ``run#<id>``        ``s#<name>`` (length, closed, writers' marks)
chunk ``i``            ``run#<id>``        ``c#<name>#<i, 12 digits>``
hook                   ``hook#<token>``    ``hook`` (the run and operation it resumes)
=====================  ==================  ======================================================

Indexes (only run records carry their keys, so both stay small):

* ``by_status``: ``st`` (status) / ``created`` (N), projecting only ``id`` and ``wf``, which
  never change, so a step's write does not touch it: ``durable runs``, counts, gc.
* ``by_due``: ``dshard`` (``due#0`` .. ``due#7``) / ``due`` (N): when a run is runnable
  (pending: created; suspended: its wake time; running: its lease's expiry). Finished and
  waiting-for-an-event runs have no ``due`` and are not in it. Workers query it to find runs
  whose SQS message was lost and runs whose worker died.

A run's items live in one partition, so appending an event is one conditional ``Put`` and
reading the log is one ``Query`` from the last ``seq`` seen.
"""

from __future__ import annotations

from typing import Any

BY_STATUS = "by_status"
BY_DUE = "by_due"
DUE_SHARDS = 8
SEQ_DIGITS = 12
TTL_ATTRIBUTE = "expires_at"
DUE_PROJECTION = ["wf", "st", "wake", "updated", "created", "order", "lo"]
"""What a worker needs to pick and order due runs without reading them."""


def run_key(run_id: str) -> dict[str, Any]:
    """The key of a run record."""
    return {"pk": {"S": f"run#{run_id}"}, "sk": {"S": "run"}}


RUN_ITEMS = ("in", "run")
"""``sk BETWEEN`` these reads a run's record, input and outcome (``in`` < ``out`` < ``run``)."""


def event_sk(seq: int) -> str:
    """The sort key of event ``seq``."""
    return f"e#{seq:0{SEQ_DIGITS}d}"


def hook_key(token: str) -> dict[str, Any]:
    """The key of a hook item."""
    return {"pk": {"S": f"hook#{token}"}, "sk": {"S": "hook"}}


def stream_sk(name: str) -> str:
    """The sort key of a stream's record."""
    return f"s#{name}"


def chunk_sk(name: str, index: int) -> str:
    """The sort key of chunk ``index`` of a stream."""
    return f"c#{name}#{index:0{SEQ_DIGITS}d}"


def due_shard(run_id: str) -> str:
    """The ``by_due`` partition a run goes to (spread so no partition gets hot)."""
    return f"due#{sum(run_id.encode()) % DUE_SHARDS}"


def table_definition(name: str) -> dict[str, Any]:
    """Arguments for ``CreateTable`` (on-demand billing)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "st", "AttributeType": "S"},
            {"AttributeName": "created", "AttributeType": "N"},
            {"AttributeName": "dshard", "AttributeType": "S"},
            {"AttributeName": "due", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BY_STATUS,
                "KeySchema": [
                    {"AttributeName": "st", "KeyType": "HASH"},
                    {"AttributeName": "created", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["id", "wf"]},
            },
            {
                "IndexName": BY_DUE,
                "KeySchema": [
                    {"AttributeName": "dshard", "KeyType": "HASH"},
                    {"AttributeName": "due", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": DUE_PROJECTION},
            },
        ],
    }
