"""Appending events to a run: a transaction per batch, conditional on the run record.

Hooks change the run record the same way, so :class:`~worlds.aws._hooks.HookWorld` builds on
:class:`AppendingWorld` (the guard, the run lock and the bookkeeping after a write).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from durable._errors import CancelRequested
from durable.world import FINISHED_STATUSES, SUPERSEDED_BY_CANCEL, NewEvent, RunUpdate
from worlds.aws._base import DAY, AwsWorldBase, Held
from worlds.aws._items import Changes, num, text
from worlds.aws._schema import TTL_ATTRIBUTE, event_sk, hook_key, run_key

_MAX_ITEMS = 90
"""Events per transaction (DynamoDB allows 100 items; the run record and hooks need room)."""
_MAX_BYTES = 3_000_000
"""Bytes per transaction (DynamoDB allows 4 MB)."""


class AppendingWorld(AwsWorldBase):
    """``append`` of :class:`~worlds.aws.AwsWorld`, and what writes to a run need."""

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
            if len(batches) > 1 and update is not None and update.status in SUPERSEDED_BY_CANCEL:
                # The outcome's own transaction checks again, but by then the batches before it
                # are written: refuse before any of them if it is known already.
                if self._refresh(run_id, owner).cancel:
                    raise CancelRequested(run_id)
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
        tokens = (
            (held.hooks if held.hooks is not None else self._hook_tokens(run_id))
            if finishing
            else []
        )
        tokens = sorted(tokens)
        outcome: dict[str, Any] | None = None
        if update is not None and (update.output is not None or update.error is not None):
            outcome = {
                "pk": text(f"run#{run_id}"),
                "sk": text("out"),
                TTL_ATTRIBUTE: num(self._finished_ttl(held, now)),
            }
            self.payloads.attr(outcome, "out", run_id, update.output)
            self.payloads.attr(outcome, "err", run_id, update.error)
        while True:
            if held.cancel and update is not None and update.status in SUPERSEDED_BY_CANCEL:
                raise CancelRequested(run_id)
            first = held.last_seq
            last = first + len(items)
            changes = Changes().set("seq", num(last)).set("updated", num(now)).add("rev", num(1))
            wake_at = None
            if update is not None:
                wake_at = update.wake_at
                if update.status == "suspended" and (
                    (update.expected_seq is not None and first > update.expected_seq) or held.cancel
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
        self,
        changes: Changes,
        run_id: str,
        update: RunUpdate,
        wake_at: float | None,
        held: Held,
        now: float,
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

    def _finished_ttl(self, held: Held, now: float) -> int:
        # A child's outcome outlives any parent (runs last max_run_days at most): gc skips the
        # children of unfinished parents, and so must the TTL.
        days = self.config.retention_days + (self.config.max_run_days if held.child else 0)
        return int(now + days * DAY)

    def _note_hook(self, run_id: str, token: str, live: bool) -> None:
        with self._lock:
            held = self._held.get(run_id)
            if held is not None and held.hooks is not None:
                if live:
                    held.hooks.add(token)
                else:
                    held.hooks.discard(token)

    def _after_append(
        self,
        run_id: str,
        owner: str,
        last: int,
        update: RunUpdate | None,
        wake_at: float | None,
        now: float,
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
