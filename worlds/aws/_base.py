"""What the parts of the AWS world share: its clients, reads, and the runs it writes to.

:class:`AwsWorldBase` holds the connections and what this world knows of the runs it holds
(:class:`Held`). Each part of :class:`~worlds.aws.AwsWorld` (appending, hooks, leases,
retention) derives from it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durable._errors import LeaseLost
from durable.world import NewEvent, RunRecord
from worlds.aws._clients import Clients
from worlds.aws._config import AwsConfig, config_url, load_config
from worlds.aws._errors import translate
from worlds.aws._items import num, run_from_item, text
from worlds.aws._payloads import PayloadStore
from worlds.aws._queue import MessageKind, WakeQueue
from worlds.aws._schema import RUN_ITEMS, TTL_ATTRIBUTE, run_key
from worlds.aws._streams import StreamStore
from worlds.aws._transact import Transaction

log = logging.getLogger("durable.aws")

DAY = 86_400.0


@dataclass
class Held:
    """What this world knows of a run it writes to: kept so a step costs no read."""

    last_seq: int
    cancel: bool
    lease_expires: float | None
    hooks: set[str] | None = None
    """Tokens of the run's live hooks, when known (saves a read when the run finishes)."""
    watched: bool = False
    """A "watch" message has been sent for this execution."""
    child: bool = False
    """The run has a parent, whose replay reads this run's outcome while it lives."""


class AwsWorldBase:
    """The plumbing of :class:`~worlds.aws.AwsWorld`: clients, reads, and held runs."""

    def __init__(
        self,
        url: str = "aws://",
        *,
        config: AwsConfig | None = None,
        clock: Callable[[], float] | None = None,
        clients: Clients | None = None,
    ) -> None:
        self.config = config or load_config(url)
        self.url = url if config is None else config_url(config)
        self._clock = clock or time.time
        self.clients = clients or Clients(self.config)
        self.table = self.config.table
        self.payloads = PayloadStore(
            self.clients.s3,
            self.config.bucket,
            self.config.prefix,
            self.config.payload_threshold,
            self.clients.account,
        )
        self.queue = WakeQueue(self.clients.sqs, self.config.queue, self.config.max_delay)
        self._streams = StreamStore(
            self.clients.dynamodb, self.table, self.payloads, self.now, self._event_ttl()
        )
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._owners: dict[str, set[str]] = {}
        self._last_sweep: dict[str, float] = {}
        self._run_locks: dict[str, threading.RLock] = {}
        self._due_cache: float | None = None

    def location(self) -> dict[str, str]:
        """Where the world's resources are, as ``durable world info`` shows it.

        Raises:
            WorldError: the bucket's name needs the account id, and STS could not be asked.
        """
        where = {
            "region": self.clients.region,
            "table": self.table,
            "queue": self.config.queue,
            "dead_letter_queue": self.config.dead_letter_queue,
            "bucket": self.payloads.bucket,
        }
        if self.config.endpoint_url:
            where["endpoint_url"] = self.config.endpoint_url
        return where

    def missing_resources(self) -> list[str]:
        """Which of :meth:`location`'s resources do not exist (``table``, ``queue``, ...).

        Raises:
            WorldError: AWS refused a call.
        """
        from worlds.aws._infra import outputs

        found = outputs(self.config)  # control-plane clients (IAM, Lambda) of their own
        checks = {
            "table": found.get("table_arn"),
            "queue": found.get("queue_url"),
            "dead_letter_queue": found.get("dead_letter_queue_url"),
            "bucket": found.get("bucket_exists") or None,
        }
        return [name for name, present in checks.items() if present is None]

    def close(self) -> None:
        self.clients.close()

    # -- plumbing ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def _tx(self) -> Transaction:
        return Transaction(self.clients.dynamodb, self.table)

    def _get_item(
        self, key: dict[str, Any], doing: str, projection: str | None = None
    ) -> dict[str, Any] | None:
        args: dict[str, Any] = {"TableName": self.table, "Key": key, "ConsistentRead": True}
        if projection:
            args["ProjectionExpression"] = projection
        try:
            item = self.clients.dynamodb.get_item(**args).get("Item")
        except Exception as exc:
            raise translate(exc, doing) from exc
        return dict(item) if item is not None else None

    def _update(self, args: dict[str, Any], doing: str) -> bool:
        """``UpdateItem``; False when its condition does not hold."""
        try:
            self.clients.dynamodb.update_item(**args)
        except Exception as exc:
            if type(exc).__name__ == "ConditionalCheckFailedException":
                return False
            raise translate(exc, doing) from exc
        return True

    def _query(self, doing: str, **args: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            pages = self.clients.dynamodb.get_paginator("query").paginate(
                TableName=self.table, **args
            )
            for page in pages:
                items.extend(page.get("Items", []))
        except Exception as exc:
            raise translate(exc, doing) from exc
        return items

    # -- reading runs --------------------------------------------------------------------------

    def _read_run_item(self, run_id: str) -> dict[str, Any] | None:
        """The run record alone (no input or outcome): one small read."""
        return self._get_item(run_key(run_id), f"reading run {run_id}")

    def _read_run(self, run_id: str) -> tuple[dict[str, Any], RunRecord] | None:
        """The run record with its input and outcome: one ``Query`` over its three items."""
        items = self._query(
            f"reading run {run_id}",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": text(f"run#{run_id}"),
                ":first": text(RUN_ITEMS[0]),
                ":last": text(RUN_ITEMS[1]),
            },
            ConsistentRead=True,
        )
        record_items = [item for item in items if item["sk"]["S"] == "run"]
        if not record_items:
            return None
        return record_items[0], run_from_item(record_items[0], self.payloads, items)

    def get_run(self, run_id: str) -> RunRecord | None:
        found = self._read_run(run_id)
        return found[1] if found is not None else None

    def _fetch_runs(self, run_ids: list[str]) -> dict[str, RunRecord]:
        """Full records of many runs: ``BatchGetItem`` of their record, input and outcome."""
        items: dict[str, list[dict[str, Any]]] = {}
        keys = [
            {"pk": text(f"run#{run_id}"), "sk": text(sk)}
            for run_id in run_ids
            for sk in ("run", "in", "out")
        ]
        for start in range(0, len(keys), 99):
            pending: dict[str, Any] = {
                self.table: {"Keys": keys[start : start + 99], "ConsistentRead": True}
            }
            for attempt in range(8):
                try:
                    result = self.clients.dynamodb.batch_get_item(RequestItems=pending)
                except Exception as exc:
                    raise translate(exc, "reading runs") from exc
                for item in result.get("Responses", {}).get(self.table, []):
                    items.setdefault(str(item["pk"]["S"])[4:], []).append(item)
                pending = result.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
        records = {}
        for run_id, parts in items.items():
            record = [part for part in parts if part["sk"]["S"] == "run"]
            if record:
                records[run_id] = run_from_item(record[0], self.payloads, parts)
        return records

    # -- held runs -----------------------------------------------------------------------------

    def _hold(self, owner: str, record: RunRecord, hooks: set[str] | None = None) -> None:
        with self._lock:
            self._held[record.id] = Held(
                record.last_seq,
                record.cancel_requested,
                record.lease_expires_at,
                hooks,
                child=record.parent_id is not None,
            )
            self._owners.setdefault(owner, set()).add(record.id)

    def _drop(self, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)
            for runs in self._owners.values():
                runs.discard(run_id)

    def _known(self, run_id: str, owner: str) -> Held:
        with self._lock:
            held = self._held.get(run_id)
            if held is not None:
                return dataclasses.replace(held)
        item = self._read_run_item(run_id)
        if item is None or item.get("lo", {}).get("S") != owner:
            raise LeaseLost(run_id)
        record = run_from_item(item, self.payloads)
        hooks = set(item.get("hooks", {}).get("SS", []))
        self._hold(owner, record, hooks)
        return Held(
            record.last_seq,
            record.cancel_requested,
            record.lease_expires_at,
            hooks,
            child=record.parent_id is not None,
        )

    def _refresh(self, run_id: str, owner: str) -> Held:
        """Re-read a run whose conditional write failed; raise ``LeaseLost`` if it is not ours."""
        with self._lock:
            self._held.pop(run_id, None)
        return self._known(run_id, owner)

    # -- events and messages -------------------------------------------------------------------

    def _event_item(self, run_id: str, new: NewEvent, now: float) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": text(f"run#{run_id}"),
            "k": text(new.kind),
            "at": num(now),
            TTL_ATTRIBUTE: num(int(now + self._event_ttl())),
        }
        if new.op_id is not None:
            item["op"] = text(new.op_id)
        if new.name is not None:
            item["n"] = text(new.name)
        self.payloads.attr(item, "d", run_id, new.data)
        return item

    def _event_ttl(self) -> float:
        return (self.config.max_run_days + self.config.retention_days) * DAY

    def _send(self, run_id: str, at: float, kind: MessageKind) -> None:
        # The message is a hint; the run is already recorded. A lost message only delays the
        # run until a worker's sweep of the due index finds it.
        try:
            self.queue.send(run_id, at, kind, self.now())
        except Exception as exc:
            log.warning(
                "run %s: could not queue a %s message (%s); a `durable worker`'s sweep of due "
                "runs picks it up within 15 s (where only the Lambda function runs, nothing "
                "does until a `durable worker MODULE` runs)",
                run_id,
                kind,
                exc,
            )
