"""Leases and due work of the AWS world: the ``by_due`` index, SQS messages, lease renewal.

A run is found two ways: a message on the wake queue, or a sweep of the due index (which
recovers runs whose message was lost). Either way it is leased by one conditional update of
its run record (``rev``), so two workers never both hold it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from durable.world import FINISHED_STATUSES, RunRecord, is_runnable, owner_is_dead
from worlds.aws._base import AwsWorldBase
from worlds.aws._errors import translate
from worlds.aws._items import Changes, changed, num, run_from_item, text
from worlds.aws._queue import Message, MessageKind
from worlds.aws._schema import BY_DUE, DUE_SHARDS, TTL_ATTRIBUTE, run_key

_LEASE_HORIZON = 3600.0
"""No lease lasts longer than this without renewal (bounds the search for dead owners)."""

_FOREIGN_RECEIVES = 3
"""Receives by workers without a run's workflow after which its message is sent afresh (the
queue's dead-letter redrive counts receives, 5 by default)."""
_FOREIGN_DELAY = 10.0
"""Seconds before the fresh message of such a run is visible."""


class LeaseWorld(AwsWorldBase):
    """``acquire``, ``claim_due``, ``next_due_at``, ``renew_leases`` and ``release``."""

    def _runnable(self, run: RunRecord, now: float) -> bool:
        return is_runnable(run.status, run.wake_at, run.lease_owner, run.lease_expires_at, now)

    def acquire(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        found = self._read_run(run_id)
        if found is None:
            return None
        return self._lease(*found, owner, lease_ttl)

    def reopen(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        found = self._read_run(run_id)
        if found is None or found[1].status != "failed":
            return None
        return self._lease(*found, owner, lease_ttl, reopening=True)

    def _lease(
        self,
        item: dict[str, Any],
        run: RunRecord,
        owner: str,
        lease_ttl: float,
        *,
        reopening: bool = False,
    ) -> RunRecord | None:
        now = self.now()
        if not reopening and not self._runnable(run, now):
            return None
        expires = now + lease_ttl
        changes = (
            Changes()
            .set("st", text("running"))
            .set("lo", text(owner))
            .set("lx", num(expires))
            .set("updated", num(now))
            .add("rev", num(1))
            .schedule(run.id, "running", now, None, expires)
        )
        if reopening:
            changes.set(TTL_ATTRIBUTE, None)  # a finished run's: it is not finished any more
        args = changes.update(
            self.table, run_key(run.id), "rev = :rev", values={":rev": item["rev"]}
        )
        if not self._update(args, f"leasing run {run.id}"):
            return None
        if reopening:
            self._clear_outcome(run.id)
            run = changed(run, error=None)
        leased = changed(
            run, status="running", lease_owner=owner, lease_expires_at=expires, updated_at=now
        )
        self._hold(owner, leased, set(item.get("hooks", {}).get("SS", [])))
        return leased

    def _clear_outcome(self, run_id: str) -> None:
        key = {"pk": text(f"run#{run_id}"), "sk": text("out")}
        try:
            self.clients.dynamodb.delete_item(TableName=self.table, Key=key)
        except Exception as exc:
            raise translate(exc, f"reopening run {run_id}") from exc

    def claim_due(
        self,
        owner: str,
        lease_ttl: float,
        limit: int,
        workflow_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        names = set(workflow_names) if workflow_names is not None else None
        claimed: list[RunRecord] = []
        if limit <= 0:
            return claimed
        if self._sweep_due("claim"):
            for run_id in self._due_now(names, limit):
                record = self.acquire(run_id, owner, lease_ttl)
                if record is not None:
                    claimed.append(record)
                if len(claimed) >= limit:
                    return claimed
        wait = 0.0 if claimed else self.config.receive_wait
        for message in self.queue.receive(limit - len(claimed), wait):
            record, done = self.take_message(message, owner, lease_ttl, names)
            if done:
                self.queue.delete(message.receipt)
            else:
                self.queue.extend(message.receipt, 5)
            if record is not None:
                claimed.append(record)
        return claimed

    def take_message(
        self, message: Message, owner: str, lease_ttl: float, names: set[str] | None
    ) -> tuple[RunRecord | None, bool]:
        """Act on a received message: lease its run if runnable now, re-queue it if early.

        Returns the leased run (if any) and whether the message has done its job (it should
        be deleted). A message for a workflow not in ``names`` is not done: another worker that
        knows the workflow should get it; after a few receives it is replaced by a fresh one.
        """
        found = self._read_run(message.run_id)
        if found is None:
            return None, True
        item, run = found
        if run.status in FINISHED_STATUSES:
            return None, True
        if names is not None and run.workflow_name not in names:
            if message.receives < _FOREIGN_RECEIVES:
                return None, False  # visible again soon, for another worker
            # Only workers that do not have the workflow took it (a deploy rolling out, a
            # fleet split by workflow): a fresh message, rather than the dead-letter queue.
            kind: MessageKind = "watch" if message.kind == "watch" else "wake"
            self._send(run.id, self.now() + _FOREIGN_DELAY, kind)
            return None, True
        now = self.now()
        if self._runnable(run, now):
            return self._lease(item, run, owner, lease_ttl), True
        if run.status == "suspended" and run.wake_at is not None and message.at >= run.wake_at:
            self._send(run.id, run.wake_at, "wake")  # received early: wait the rest
        elif run.status == "running" and message.kind == "watch":
            self._send(run.id, (run.lease_expires_at or now) + 1.0, "watch")
        return None, True

    def _sweep_due(self, which: str) -> bool:
        """Whether it is time to look in the due index again (``claim`` or ``next``)."""
        interval = self.config.sweep_interval
        now = time.monotonic()
        with self._lock:
            if interval > 0 and now - self._last_sweep.get(which, -interval) < interval:
                return False
            self._last_sweep[which] = now
        return True

    def _due_index(
        self, names: set[str] | None, before: float, per_shard: int | None, skip_pending: bool
    ) -> list[dict[str, Any]]:
        """Entries of the due index with ``due <= before`` (at most ``per_shard`` per shard)."""
        found: list[dict[str, Any]] = []
        for shard in range(DUE_SHARDS):
            args: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": BY_DUE,
                "KeyConditionExpression": "dshard = :s",
                "ExpressionAttributeValues": {":s": text(f"due#{shard}")},
            }
            if before != float("inf"):  # DynamoDB numbers are finite
                args["KeyConditionExpression"] += " AND due <= :t"
                args["ExpressionAttributeValues"][":t"] = num(before)
            if per_shard is not None:
                args["Limit"] = max(10, per_shard)  # a page at a time: the index is sorted
            taken = 0
            try:
                for page in self.clients.dynamodb.get_paginator("query").paginate(**args):
                    for item in page.get("Items", []):
                        if names is not None and item.get("wf", {}).get("S") not in names:
                            continue
                        if skip_pending and item.get("st", {}).get("S") == "pending":
                            continue
                        found.append(item)
                        taken += 1
                    if per_shard is not None and taken >= per_shard:
                        break
            except Exception as exc:
                raise translate(exc, "looking for due runs") from exc
        return found

    def _due_now(self, names: set[str] | None, limit: int) -> list[str]:
        now = self.now()
        items = self._due_index(names, now, limit, skip_pending=False)
        # Leases of processes on this host that have died are taken at once, not when they lapse.
        items.extend(
            item
            for item in self._due_index(names, now + _LEASE_HORIZON, None, skip_pending=True)
            if float(item["due"]["N"]) > now
            and item.get("st", {}).get("S") == "running"
            and owner_is_dead(item.get("lo", {}).get("S"))
        )
        items.sort(key=_due_order)
        return [str(item["pk"]["S"])[4:] for item in items[:limit]]

    def next_due_at(self, workflow_names: Sequence[str] | None = None) -> float | None:
        names = set(workflow_names) if workflow_names is not None else None
        if not self._sweep_due("next"):
            with self._lock:
                return self._due_cache
        items = self._due_index(names, float("inf"), 1, skip_pending=True)
        due = min((float(item["due"]["N"]) for item in items), default=None)
        with self._lock:
            self._due_cache = due
        return due

    def renew_leases(self, owner: str, lease_ttl: float) -> int:
        with self._lock:
            runs = sorted(self._owners.get(owner, set()))
        renewed = 0
        for run_id in runs:
            now = self.now()
            expires = now + lease_ttl
            changes = (
                Changes()
                .set("lx", num(expires))
                .add("rev", num(1))
                .schedule(run_id, "running", now, None, expires)
            )
            args = changes.update(
                self.table,
                run_key(run_id),
                "lo = :me AND st = :running",
                values={":me": text(owner), ":running": text("running")},
            )
            if self._update(args, f"renewing the lease of run {run_id}"):
                renewed += 1
                with self._lock:
                    held = self._held.get(run_id)
                    watch = held is not None and not held.watched
                    if held is not None:
                        held.lease_expires = expires
                        held.watched = True
                if watch:
                    # A run still executing: a message checks that its worker lives, so a
                    # deployment without workers' sweeps (Lambda only) recovers it.
                    self._send(run_id, expires + 1.0, "watch")
            else:
                self._drop(run_id)
        return renewed

    def release(self, run_id: str, owner: str) -> None:
        item = self._read_run_item(run_id)
        self._drop(run_id)
        if item is None or item.get("lo", {}).get("S") != owner:
            return
        run = run_from_item(item, self.payloads)
        now = self.now()
        status = "pending" if run.status == "running" else run.status
        changes = (
            Changes()
            .set("st", text(status))
            .set("lo", None)
            .set("lx", None)
            .set("updated", num(now))
            .add("rev", num(1))
            .schedule(run_id, status, now, run.wake_at, None)
        )
        args = changes.update(self.table, run_key(run_id), "rev = :rev", {":rev": item["rev"]})
        if self._update(args, f"releasing run {run_id}") and status == "pending":
            self._send(run_id, now, "start")


def _due_order(item: dict[str, Any]) -> tuple[float, float, float]:
    """Oldest due first: wake time (or last change), then creation, then creation instant."""
    wake = item.get("wake")
    since = float(wake["N"]) if wake is not None else float(item["updated"]["N"])
    return since, float(item["created"]["N"]), float(item.get("order", {"N": "0"})["N"])
