"""The AWS world: run records and event logs in DynamoDB, wake-ups in SQS, large payloads in S3.

Every write that changes a run is one DynamoDB transaction conditional on the run record:
``lo`` (the lease owner) and ``seq`` (the newest event's number) must be what the writer knows,
so an event is recorded once and only the lease holder writes. A step completion is one
``TransactWriteItems`` request (the run record's ``seq`` and the event item). ``rev`` counts
every change to a run record and guards read-then-write changes (leasing, cancelling).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from durable._errors import HookConflict, HookNotFound, LeaseLost
from durable.world import (
    FINISHED_STATUSES,
    RUN_STATUSES,
    Event,
    HookRecord,
    NewEvent,
    NewRun,
    RunRecord,
    RunStatus,
    RunUpdate,
    StreamRecord,
    owner_is_dead,
)
from worlds.aws._clients import Clients
from worlds.aws._config import AwsConfig, config_url, load_config
from worlds.aws._errors import translate
from worlds.aws._items import (
    Changes,
    due_of,
    event_from_item,
    hook_from_item,
    num,
    run_from_item,
    text,
)
from worlds.aws._payloads import PayloadStore
from worlds.aws._queue import Message, MessageKind, WakeQueue
from worlds.aws._schema import (
    BY_DUE,
    BY_STATUS,
    DUE_SHARDS,
    RUN_ITEMS,
    TTL_ATTRIBUTE,
    due_shard,
    event_sk,
    hook_key,
    run_key,
)
from worlds.aws._streams import StreamStore
from worlds.aws._transact import Transaction

log = logging.getLogger("durable.aws")

DAY = 86_400.0
_MAX_ITEMS = 90
"""Events per transaction (DynamoDB allows 100 items; the run record and hooks need room)."""
_LEASE_HORIZON = 3600.0
"""No lease lasts longer than this without renewal (bounds the search for dead owners)."""
_MAX_BYTES = 3_000_000
"""Bytes per transaction (DynamoDB allows 4 MB)."""


@dataclass
class _Held:
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


class AwsWorld:
    """A :class:`~durable.world.World` on DynamoDB, SQS and S3 (see ``worlds.aws._schema``)."""

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
        self._held: dict[str, _Held] = {}
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

    # -- plumbing ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def _tx(self) -> Transaction:
        return Transaction(self.clients.dynamodb, self.table)

    def _get_item(self, key: dict[str, Any], doing: str, projection: str | None = None) -> (
        dict[str, Any] | None
    ):
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

    def _hold(self, owner: str, record: RunRecord, hooks: set[str] | None = None) -> None:
        with self._lock:
            self._held[record.id] = _Held(
                record.last_seq, record.cancel_requested, record.lease_expires_at, hooks,
                child=record.parent_id is not None,
            )
            self._owners.setdefault(owner, set()).add(record.id)

    def _drop(self, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)
            for runs in self._owners.values():
                runs.discard(run_id)

    def _known(self, run_id: str, owner: str) -> _Held:
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
        return _Held(
            record.last_seq, record.cancel_requested, record.lease_expires_at, hooks,
            child=record.parent_id is not None,
        )

    def _finished_ttl(self, held: _Held, now: float) -> int:
        # A child's outcome outlives any parent (runs last max_run_days at most): gc skips the
        # children of unfinished parents, and so must the TTL.
        days = self.config.retention_days + (self.config.max_run_days if held.child else 0)
        return int(now + days * DAY)

    def _refresh(self, run_id: str, owner: str) -> _Held:
        """Re-read a run whose conditional write failed; raise ``LeaseLost`` if it is not ours."""
        with self._lock:
            self._held.pop(run_id, None)
        return self._known(run_id, owner)

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
            log.warning("run %s: could not queue a %s message (%s); the sweep will find it",
                        run_id, kind, exc)

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self, run: NewRun, *, owner: str | None, lease_ttl: float
    ) -> tuple[RunRecord, bool]:
        now = self.now()
        status: RunStatus = "running" if owner else "pending"
        lease_expires = now + lease_ttl if owner else None
        record = RunRecord(
            id=run.id, workflow_name=run.workflow_name, status=status, input=run.input,
            output=None, error=None, created_at=now, updated_at=now,
            wake_at=None if owner else now, lease_owner=owner, lease_expires_at=lease_expires,
            cancel_requested=False, parent_id=run.parent_id, last_seq=1,
        )
        item: dict[str, Any] = {
            **run_key(run.id),
            "id": text(run.id), "wf": text(run.workflow_name), "st": text(status),
            "created": num(now), "updated": num(now), "seq": num(1), "rev": num(1),
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
            "pk": text(f"run#{run.id}"), "sk": text("in"),
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

    def get_run(self, run_id: str) -> RunRecord | None:
        found = self._read_run(run_id)
        return found[1] if found is not None else None

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        statuses = [status] if status is not None else list(RUN_STATUSES)
        runs: list[RunRecord] = []
        for st in statuses:
            runs.extend(self._runs_with_status(st, workflow_name, limit))
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return runs[:limit]

    def _runs_with_status(
        self, status: str, workflow_name: str | None, limit: int
    ) -> list[RunRecord]:
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
        records = self._fetch_runs(ids[:limit])
        return [records[run_id] for run_id in ids[:limit] if run_id in records]

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

    def count_runs(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in RUN_STATUSES:
            total = 0
            try:
                pages = self.clients.dynamodb.get_paginator("query").paginate(
                    TableName=self.table, IndexName=BY_STATUS, Select="COUNT",
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
        fetched = self.payloads.prefetch(items, "d")
        return [event_from_item(run_id, item, self.payloads, fetched) for item in items]

    # -- appending -----------------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        now = self.now()
        items = [self._event_item(run_id, new, now) for new in events]
        batches = _batches(items)
        with self._run_lock(run_id):
            for batch in batches[:-1]:
                self._append_items(run_id, owner, batch, None, now)
            return self._append_items(run_id, owner, batches[-1], update, now)

    def _run_lock(self, run_id: str) -> threading.RLock:
        # Threads of this process writing to one run (parallel branches) take turns here
        # rather than colliding on the run record's condition and re-reading it.
        with self._lock:
            lock = self._run_locks.get(run_id)
            if lock is None:
                if len(self._run_locks) > 4096:
                    self._run_locks = {k: v for k, v in self._run_locks.items() if k in self._held}
                lock = self._run_locks[run_id] = threading.RLock()
            return lock

    def _append_items(
        self,
        run_id: str,
        owner: str,
        items: list[dict[str, Any]],
        update: RunUpdate | None,
        now: float,
    ) -> bool:
        held = self._known(run_id, owner)
        finishing = update is not None and update.status in FINISHED_STATUSES
        tokens = (held.hooks if held.hooks is not None else self._hook_tokens(run_id)) if (
            finishing
        ) else []
        tokens = sorted(tokens)
        outcome: dict[str, Any] | None = None
        if update is not None and (update.output is not None or update.error is not None):
            outcome = {
                "pk": text(f"run#{run_id}"), "sk": text("out"),
                TTL_ATTRIBUTE: num(self._finished_ttl(held, now)),
            }
            self.payloads.attr(outcome, "out", run_id, update.output)
            self.payloads.attr(outcome, "err", run_id, update.error)
        while True:
            first = held.last_seq
            last = first + len(items)
            changes = Changes().set("seq", num(last)).set("updated", num(now)).add("rev", num(1))
            wake_at = None
            if update is not None:
                wake_at = update.wake_at
                if update.status == "suspended" and (
                    (update.expected_seq is not None and first > update.expected_seq)
                    or held.cancel
                ):
                    wake_at = now  # events (or a cancel) arrived from elsewhere while it ran
                self._apply_update(changes, run_id, update, wake_at, held, now)
                if tokens:
                    changes.set("hooks", None)
            tx = self._tx()
            tx.update(self._guarded(changes, owner, first, held.cancel, run_key(run_id)))
            for offset, item in enumerate(items, start=1):
                tx.put({**item, "sk": text(event_sk(first + offset))}, "attribute_not_exists(pk)")
            for token in tokens:
                tx.delete(hook_key(token))
            if outcome is not None:
                tx.put(outcome)
            failed = tx.commit(f"appending to run {run_id}")
            if failed is None:
                break
            held = self._refresh(run_id, owner)
        self._after_append(run_id, owner, last, update, wake_at, now)
        return held.cancel

    def _guarded(
        self, changes: Changes, owner: str, seq: int, cancel: bool, key: dict[str, Any]
    ) -> dict[str, Any]:
        condition = "lo = :me AND seq = :seen"
        if not cancel:
            condition += " AND attribute_not_exists(cxl)"
        return changes.update(
            self.table, key, condition, values={":me": text(owner), ":seen": num(seq)}
        )

    def _apply_update(
        self, changes: Changes, run_id: str, update: RunUpdate, wake_at: float | None,
        held: _Held, now: float,
    ) -> None:
        changes.set("st", text(update.status))
        changes.set("wake", num(wake_at) if wake_at is not None else None)
        lease_expires = held.lease_expires
        if update.release:
            changes.set("lo", None).set("lx", None)
            lease_expires = None
        if update.status in FINISHED_STATUSES:
            changes.set(TTL_ATTRIBUTE, num(self._finished_ttl(held, now)))
        changes.schedule(run_id, update.status, now, wake_at, lease_expires)

    def _note_hook(self, run_id: str, token: str, live: bool) -> None:
        with self._lock:
            held = self._held.get(run_id)
            if held is not None and held.hooks is not None:
                if live:
                    held.hooks.add(token)
                else:
                    held.hooks.discard(token)

    def _after_append(
        self, run_id: str, owner: str, last: int, update: RunUpdate | None,
        wake_at: float | None, now: float,
    ) -> None:
        with self._lock:
            held = self._held.get(run_id)
            if held is not None:
                held.last_seq = last
        if update is None:
            return
        if update.release:
            self._drop(run_id)
        if update.status == "suspended" and wake_at is not None:
            with self._lock:
                if self._due_cache is None or wake_at < self._due_cache:
                    self._due_cache = wake_at
            if wake_at > now:
                # Due now is covered elsewhere: the runtime continues or releases the run (a
                # "start" message), and a resumed hook sends its own message.
                self._send(run_id, wake_at, "wake")
        elif update.status == "pending":
            self._send(run_id, now, "start")

    def _hook_tokens(self, run_id: str) -> list[str]:
        item = self._get_item(run_key(run_id), f"reading the hooks of run {run_id}", "hooks")
        return sorted(item.get("hooks", {}).get("SS", [])) if item else []

    # -- leases --------------------------------------------------------------------------------

    def _runnable(self, run: RunRecord, now: float) -> bool:
        if run.status == "pending":
            return run.lease_owner is None
        if run.status == "suspended":
            return run.wake_at is not None and run.wake_at <= now
        if run.status == "running":
            expires = run.lease_expires_at or 0.0
            return expires <= now or owner_is_dead(run.lease_owner)
        return False

    def acquire(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        found = self._read_run(run_id)
        if found is None:
            return None
        return self._lease(*found, owner, lease_ttl)

    def _lease(
        self, item: dict[str, Any], run: RunRecord, owner: str, lease_ttl: float
    ) -> RunRecord | None:
        now = self.now()
        if not self._runnable(run, now):
            return None
        expires = now + lease_ttl
        changes = (
            Changes().set("st", text("running")).set("lo", text(owner)).set("lx", num(expires))
            .set("updated", num(now)).add("rev", num(1))
            .schedule(run.id, "running", now, None, expires)
        )
        args = changes.update(
            self.table, run_key(run.id), "rev = :rev", values={":rev": item["rev"]}
        )
        if not self._update(args, f"leasing run {run.id}"):
            return None
        leased = dataclasses.replace(
            run, status="running", lease_owner=owner, lease_expires_at=expires, updated_at=now
        )
        self._hold(owner, leased, set(item.get("hooks", {}).get("SS", [])))
        return leased

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
        knows the workflow should get it.
        """
        found = self._read_run(message.run_id)
        if found is None:
            return None, True
        item, run = found
        if run.status in FINISHED_STATUSES:
            return None, True
        if names is not None and run.workflow_name not in names:
            return None, False
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
                Changes().set("lx", num(expires)).add("rev", num(1))
                .schedule(run_id, "running", now, None, expires)
            )
            args = changes.update(
                self.table, run_key(run_id), "lo = :me AND st = :running",
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
            Changes().set("st", text(status)).set("lo", None).set("lx", None)
            .set("updated", num(now)).add("rev", num(1))
            .schedule(run_id, status, now, run.wake_at, None)
        )
        args = changes.update(self.table, run_key(run_id), "rev = :rev", {":rev": item["rev"]})
        if self._update(args, f"releasing run {run_id}") and status == "pending":
            self._send(run_id, now, "start")

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
        return dataclasses.replace(run, cancel_requested=True, updated_at=now, wake_at=wake_at)

    # -- hooks ---------------------------------------------------------------------------------

    def create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        with self._run_lock(hook.run_id):
            self._create_hook(owner, hook, event)

    def _create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        while True:
            existing = self.get_hook(hook.token)
            if existing is not None:
                if (existing.run_id, existing.op_id) == (hook.run_id, hook.op_id):
                    return
                raise HookConflict(hook.token, existing.run_id)
            held = self._known(hook.run_id, owner)
            now = self.now()
            item = self._event_item(hook.run_id, event, now)
            changes = (
                Changes().set("seq", num(held.last_seq + 1)).set("updated", num(now))
                .add("rev", num(1)).add("hooks", {"SS": [hook.token]})
            )
            hook_item: dict[str, Any] = {
                **hook_key(hook.token), "run": text(hook.run_id), "op": text(hook.op_id),
                "created": num(hook.created_at),
            }
            if hook.timeout_at is not None:
                hook_item["timeout"] = num(hook.timeout_at)
            if hook.schema is not None:
                hook_item["schema"] = text(hook.schema)
            tx = self._tx()
            tx.update(self._guarded(changes, owner, held.last_seq, held.cancel,
                                    run_key(hook.run_id)))
            tx.put({**item, "sk": text(event_sk(held.last_seq + 1))}, "attribute_not_exists(pk)")
            tx.put(hook_item, "attribute_not_exists(pk)")
            failed = tx.commit(f"creating hook {hook.token!r}")
            if failed is None:
                self._after_append(hook.run_id, owner, held.last_seq + 1, None, None, now)
                self._note_hook(hook.run_id, hook.token, True)
                return
            if failed != 2:
                self._refresh(hook.run_id, owner)

    def resume_hook(self, token: str, payload: bytes) -> HookRecord:
        found = self.get_hook(token)
        if found is None:
            raise HookNotFound(token)
        with self._run_lock(found.run_id):
            return self._resume_hook(token, payload, found)

    def _resume_hook(self, token: str, payload: bytes, found: HookRecord) -> HookRecord:
        hook: HookRecord | None = found
        event = self._event_item(
            found.run_id, NewEvent("hook_received", found.op_id, token, payload), self.now()
        )
        while True:
            if hook is None or hook.run_id != found.run_id:
                raise HookNotFound(token)
            item = self._read_run_item(hook.run_id)
            if item is None or item["st"]["S"] in FINISHED_STATUSES:
                raise HookNotFound(token)
            run = run_from_item(item, self.payloads)
            now = self.now()
            seq = run.last_seq + 1
            event["at"] = num(now)
            changes = Changes().set("seq", num(seq)).set("updated", num(now)).add("rev", num(1))
            if run.status == "suspended":
                changes.set("wake", num(now)).schedule(run.id, "suspended", now, now, None)
            tx = self._tx()
            tx.check(hook_key(token), "run = :run", {":run": text(run.id)})
            tx.update(changes.update(
                self.table, run_key(run.id), "seq = :seen", values={":seen": num(run.last_seq)}
            ))
            tx.put({**event, "sk": text(event_sk(seq))}, "attribute_not_exists(pk)")
            failed = tx.commit(f"resuming hook {token!r}")
            if failed == 0:
                raise HookNotFound(token)
            if failed is None:
                break
            hook = self.get_hook(token)
        with self._lock:
            held = self._held.get(run.id)
            if held is not None and held.last_seq < seq:
                held.last_seq = seq
        if run.status == "suspended":
            self._send(run.id, now, "hook")
        return hook

    def dispose_hook(
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None = None,
        expected_seq: int | None = None,
    ) -> bool:
        with self._run_lock(run_id):
            return self._dispose_hook(run_id, owner, token, event, expected_seq)

    def _dispose_hook(
        self, run_id: str, owner: str, token: str, event: NewEvent | None,
        expected_seq: int | None,
    ) -> bool:
        while True:
            held = self._known(run_id, owner)
            if expected_seq is not None and held.last_seq > expected_seq:
                return False
            now = self.now()
            last = held.last_seq + (1 if event is not None else 0)
            changes = (
                Changes().set("seq", num(last)).set("updated", num(now)).add("rev", num(1))
                .delete("hooks", {"SS": [token]})
            )
            tx = self._tx()
            tx.update(self._guarded(changes, owner, held.last_seq, held.cancel, run_key(run_id)))
            tx.delete(hook_key(token), "attribute_not_exists(pk) OR run = :run",
                      {":run": text(run_id)})
            if event is not None:
                item = self._event_item(run_id, event, now)
                tx.put({**item, "sk": text(event_sk(last))}, "attribute_not_exists(pk)")
            failed = tx.commit(f"disposing of hook {token!r}")
            if failed is None:
                self._after_append(run_id, owner, last, None, None, now)
                self._note_hook(run_id, token, False)
                return True
            if failed == 1:  # another run's hook holds the token now: leave it alone
                return self._dispose_without_hook(run_id, owner, token, event, expected_seq)
            self._refresh(run_id, owner)

    def _dispose_without_hook(
        self, run_id: str, owner: str, token: str, event: NewEvent | None,
        expected_seq: int | None,
    ) -> bool:
        held = self._known(run_id, owner)
        if expected_seq is not None and held.last_seq > expected_seq:
            return False
        if event is not None:
            self.append(run_id, owner, [event])
        return True

    def get_hook(self, token: str) -> HookRecord | None:
        item = self._get_item(hook_key(token), f"reading hook {token!r}")
        return hook_from_item(item) if item is not None else None

    def list_hooks(self, run_id: str | None = None) -> list[HookRecord]:
        if run_id is not None:
            hooks = [h for t in self._hook_tokens(run_id) if (h := self.get_hook(t)) is not None]
            hooks = [h for h in hooks if h.run_id == run_id]
        else:
            hooks = []
            try:
                pages = self.clients.dynamodb.get_paginator("scan").paginate(
                    TableName=self.table, FilterExpression="begins_with(pk, :h)",
                    ExpressionAttributeValues={":h": text("hook#")},
                )
                for page in pages:
                    hooks.extend(hook_from_item(item) for item in page.get("Items", []))
            except Exception as exc:
                raise translate(exc, "listing hooks") from exc
        return sorted(hooks, key=lambda h: (h.created_at, h.token))

    # -- retention -----------------------------------------------------------------------------

    def delete_runs(self, finished_before: float) -> int:
        deleted = 0
        for status in sorted(FINISHED_STATUSES):
            items = self._query(
                f"listing {status} runs to delete",
                IndexName=BY_STATUS,
                KeyConditionExpression="st = :st",
                ExpressionAttributeValues={":st": text(status)},
            )
            ids = [str(item["id"]["S"]) for item in items]
            for start in range(0, len(ids), 100):
                records = self._fetch_runs(ids[start : start + 100])
                for record in records.values():
                    if record.updated_at < finished_before and not self._parent_unfinished(
                        record.parent_id
                    ):
                        self._delete_run(record.id)
                        deleted += 1
        return deleted

    def _parent_unfinished(self, parent_id: str | None) -> bool:
        parent = self.get_run(parent_id) if parent_id is not None else None
        return parent is not None and parent.status not in FINISHED_STATUSES

    def _delete_run(self, run_id: str) -> None:
        keys = self._query(
            f"listing the items of run {run_id}",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text(f"run#{run_id}")},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        # The run record goes last, so a gc cut short leaves a run that a later gc finds.
        keys.sort(key=lambda key: key["sk"]["S"] == "run")
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            self._batch_write(requests, f"deleting run {run_id}")
        self.payloads.delete_run(run_id)
        self._drop(run_id)

    def _batch_write(self, requests: list[dict[str, Any]], doing: str) -> None:
        pending = {self.table: requests}
        for attempt in range(8):
            try:
                result = self.clients.dynamodb.batch_write_item(RequestItems=pending)
            except Exception as exc:
                raise translate(exc, doing) from exc
            pending = result.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(2.0, 0.05 * 2**attempt))
        raise translate(RuntimeError("unprocessed items after 8 attempts"), doing)

    def close(self) -> None:
        self.clients.close()

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


def _due_order(item: dict[str, Any]) -> tuple[float, float, float]:
    """Oldest due first: wake time (or last change), then creation, then creation instant."""
    wake = item.get("wake")
    since = float(wake["N"]) if wake is not None else float(item["updated"]["N"])
    return since, float(item["created"]["N"]), float(item.get("order", {"N": "0"})["N"])


def _batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split events so each transaction stays within DynamoDB's item and size limits."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for item in items:
        weight = sum(len(v.get("B", b"")) + len(v.get("S", "")) for v in item.values())
        if batches[-1] and (len(batches[-1]) >= _MAX_ITEMS or size + weight > _MAX_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += weight
    return batches
