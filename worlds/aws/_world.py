"""The AWS world: run records and event logs in DynamoDB, wake-ups in SQS, large payloads in S3.

Every write that changes a run is one DynamoDB transaction conditional on the run record:
``lo`` (the lease owner) and ``seq`` (the newest event's number) must be what the writer knows,
so an event is recorded once and only the lease holder writes. A step completion is one
``TransactWriteItems`` request (the run record's ``seq`` and the event item). ``rev`` counts
every change to a run record and guards read-then-write changes (leasing, cancelling).

The world is built of parts, a module each: ``_base`` (clients, reads, held runs),
``_appending``, ``_hooks``, ``_leases`` and ``_retention``; runs, cancelling and streams are here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from durable._errors import RunDataLost
from durable.world import (
    FINISHED_STATUSES,
    RUN_STATUSES,
    Event,
    NewEvent,
    NewRun,
    RunLifetime,
    RunRecord,
    RunStatus,
    StreamRecord,
)
from worlds.aws._base import DAY
from worlds.aws._errors import translate
from worlds.aws._hooks import HookWorld
from worlds.aws._items import (
    Changes,
    changed,
    due_of,
    event_from_item,
    num,
    seq_from_sk,
    text,
)
from worlds.aws._leases import LeaseWorld
from worlds.aws._payloads import EXPIRY
from worlds.aws._retention import RetentionWorld
from worlds.aws._schema import BY_STATUS, TTL_ATTRIBUTE, due_shard, event_sk, run_key

_LISTING_ORDER = ("pending", "running", "suspended", "running", "completed", "failed", "cancelled")
"""The order ``list_runs`` reads the status index in (see there)."""


class AwsWorld(HookWorld, LeaseWorld, RetentionWorld):
    """A :class:`~durable.world.World` on DynamoDB, SQS and S3 (see ``worlds.aws._schema``)."""

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self, run: NewRun, *, owner: str | None, lease_ttl: float
    ) -> tuple[RunRecord, bool]:
        now = self.now()
        status: RunStatus = "running" if owner else "pending"
        lease_expires = now + lease_ttl if owner else None
        record = RunRecord(
            id=run.id,
            workflow_name=run.workflow_name,
            status=status,
            input=run.input,
            output=None,
            error=None,
            created_at=now,
            updated_at=now,
            wake_at=None if owner else now,
            lease_owner=owner,
            lease_expires_at=lease_expires,
            cancel_requested=False,
            parent_id=run.parent_id,
            last_seq=1,
        )
        item: dict[str, Any] = {
            **run_key(run.id),
            "id": text(run.id),
            "wf": text(run.workflow_name),
            "st": text(status),
            "created": num(now),
            "updated": num(now),
            "seq": num(1),
            "rev": num(1),
            "order": num(time.time_ns()),
        }
        if owner:
            item["lo"] = text(owner)
            item["lx"] = num(now + lease_ttl)
        else:
            item["wake"] = num(now)
        if run.parent_id:
            item["parent"] = text(run.parent_id)
        due = due_of(status, now, record.wake_at, lease_expires)
        if due is not None:
            item["due"] = num(due)
            item["dshard"] = text(due_shard(run.id))
        inputs: dict[str, Any] = {
            "pk": text(f"run#{run.id}"),
            "sk": text("in"),
            TTL_ATTRIBUTE: num(int(now + self._event_ttl())),
        }
        self.payloads.attr(inputs, "d", run.id, run.input)
        event = self._event_item(run.id, NewEvent("run_created", name=run.workflow_name), now)
        event["sk"] = text(event_sk(1))
        tx = self._tx()
        tx.put(item, "attribute_not_exists(pk)")
        tx.put(inputs)
        tx.put(event, "attribute_not_exists(pk)")
        if tx.commit(f"creating run {run.id}") is not None:
            existing = self.get_run(run.id)
            if existing is None:  # removed between the two calls: try once more
                return self.create_run(run, owner=owner, lease_ttl=lease_ttl)
            return existing, False
        if owner:
            # Executed where it was created: if that process dies, a deployment without
            # workers (Lambda only) has no sweep to find the run, so a message checks on it
            # once the lease could have lapsed.
            self._hold(owner, record, set())
            with self._lock:
                self._held[run.id].watched = True
            self._send(run.id, now + lease_ttl + 1.0, "watch")
        else:
            self._send(run.id, now, "start")
        return record, True

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        # The index is read one status at a time while runs change status: in lifecycle order,
        # with ``running`` again after ``suspended`` (a run woken meanwhile), a run that moves
        # on between two reads is still seen once; records are read afterwards, each once.
        statuses = (status,) if status is not None else _LISTING_ORDER
        ids: dict[str, None] = {}
        for st in statuses:
            ids.update(dict.fromkeys(self._ids_with_status(st, workflow_name, limit)))
        records = self._fetch_runs(list(ids))
        runs = [
            r for r in records.values()
            if (status is None or r.status == status)
            and (workflow_name is None or r.workflow_name == workflow_name)
        ]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return runs[:limit]

    def _ids_with_status(self, status: str, workflow_name: str | None, limit: int) -> list[str]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": BY_STATUS,
            "KeyConditionExpression": "st = :st",
            "ExpressionAttributeValues": {":st": text(status)},
            "ScanIndexForward": False,
        }
        if workflow_name is not None:
            args["FilterExpression"] = "wf = :wf"
            args["ExpressionAttributeValues"][":wf"] = text(workflow_name)
        ids: list[str] = []
        try:
            for page in self.clients.dynamodb.get_paginator("query").paginate(**args):
                ids.extend(str(item["id"]["S"]) for item in page.get("Items", []))
                if len(ids) >= limit:
                    break
        except Exception as exc:
            raise translate(exc, f"listing {status} runs") from exc
        return ids[:limit]

    def count_runs(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in RUN_STATUSES:
            total = 0
            try:
                pages = self.clients.dynamodb.get_paginator("query").paginate(
                    TableName=self.table,
                    IndexName=BY_STATUS,
                    Select="COUNT",
                    KeyConditionExpression="st = :st",
                    ExpressionAttributeValues={":st": text(status)},
                )
                for page in pages:
                    total += int(page.get("Count", 0))
            except Exception as exc:
                raise translate(exc, f"counting {status} runs") from exc
            if total:
                counts[status] = total
        return counts

    def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        items = self._query(
            f"reading the events of run {run_id}",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": text(f"run#{run_id}"),
                ":lo": text(event_sk(after_seq + 1)),
                ":hi": text("e#9"),
            },
            ConsistentRead=True,
        )
        seqs = [seq_from_sk(str(item["sk"]["S"])) for item in items]
        if seqs != list(range(after_seq + 1, after_seq + 1 + len(seqs))) or (
            not seqs and after_seq == 0 and self._read_run_item(run_id) is not None
        ):
            # DynamoDB's TTL removed the oldest events of a run that lived too long: replaying
            # what is left would run finished steps again.
            raise RunDataLost(
                f"this run's log expired (max_run_days = {self.config.max_run_days}): events "
                f"of run {run_id} are gone {EXPIRY}. The run cannot go on."
            )
        fetched = self.payloads.prefetch(items, "d")
        return [event_from_item(run_id, item, self.payloads, fetched) for item in items]

    @property
    def run_lifetime(self) -> RunLifetime:
        """Runs may wait until ``max_run_days`` after they started (their log expires later)."""
        days = self.config.max_run_days
        return RunLifetime(
            days * DAY,
            f"max_run_days = {days} days (`durable bootstrap --max-run-days N` raises it)",
        )

    # -- cancelling ----------------------------------------------------------------------------

    def request_cancel(self, run_id: str) -> RunRecord | None:
        while True:
            found = self._read_run(run_id)
            if found is None:
                return None
            item, run = found
            if run.status in FINISHED_STATUSES:
                return run
            now = self.now()
            changes = Changes().set("cxl", {"BOOL": True}).set("updated", num(now))
            changes.add("rev", num(1))
            wake_at = run.wake_at
            if run.status == "suspended":
                wake_at = now
                changes.set("wake", num(now)).schedule(run_id, "suspended", now, now, None)
            args = changes.update(self.table, run_key(run_id), "rev = :rev", {":rev": item["rev"]})
            if self._update(args, f"cancelling run {run_id}"):
                break
        if run.lease_owner is None:
            self._send(run_id, now, "start")
        return changed(run, cancel_requested=True, updated_at=now, wake_at=wake_at)

    # -- streams -------------------------------------------------------------------------------

    def write_chunks(
        self,
        run_id: str,
        owner: str,
        stream: str,
        writer: str,
        position: int,
        chunks: Sequence[bytes],
        *,
        close: bool = False,
    ) -> bool:
        return self._streams.write(run_id, owner, stream, writer, position, chunks, close)

    def read_chunks(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        return self._streams.read(run_id, stream, start, limit)

    def list_streams(self, run_id: str) -> list[StreamRecord]:
        return self._streams.list(run_id)
