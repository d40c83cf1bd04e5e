"""Hooks of the AWS world: an item per token, also named in its run record's ``hooks`` set.

A hook is created, resumed or disposed of in one transaction with its run record and event,
so the hook item, the ``hooks`` set and the event log agree.
"""

from __future__ import annotations

from typing import Any

from durable._errors import HookConflict, HookNotFound
from durable.world import FINISHED_STATUSES, HookRecord, NewEvent
from worlds.aws._appending import AppendingWorld
from worlds.aws._errors import translate
from worlds.aws._items import Changes, hook_from_item, num, run_from_item, text
from worlds.aws._schema import event_sk, hook_key, run_key


class HookWorld(AppendingWorld):
    """``create_hook``, ``resume_hook``, ``dispose_hook``, ``get_hook`` and ``list_hooks``."""

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
                Changes()
                .set("seq", num(held.last_seq + 1))
                .set("updated", num(now))
                .add("rev", num(1))
                .add("hooks", {"SS": [hook.token]})
            )
            hook_item: dict[str, Any] = {
                **hook_key(hook.token),
                "run": text(hook.run_id),
                "op": text(hook.op_id),
                "created": num(hook.created_at),
            }
            if hook.timeout_at is not None:
                hook_item["timeout"] = num(hook.timeout_at)
            if hook.schema is not None:
                hook_item["schema"] = text(hook.schema)
            tx = self._tx()
            tx.update(
                self._guarded(changes, owner, held.last_seq, held.cancel, run_key(hook.run_id))
            )
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
            if hook.timed_out(now):
                raise HookNotFound(token, hook.timeout_at)
            seq = run.last_seq + 1
            event["at"] = num(now)
            changes = Changes().set("seq", num(seq)).set("updated", num(now)).add("rev", num(1))
            if run.status == "suspended":
                changes.set("wake", num(now)).schedule(run.id, "suspended", now, now, None)
            tx = self._tx()
            tx.check(hook_key(token), "run = :run", {":run": text(run.id)})
            tx.update(
                changes.update(
                    self.table, run_key(run.id), "seq = :seen", values={":seen": num(run.last_seq)}
                )
            )
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
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None,
        expected_seq: int | None,
    ) -> bool:
        while True:
            held = self._known(run_id, owner)
            if expected_seq is not None and held.last_seq > expected_seq:
                return False
            now = self.now()
            last = held.last_seq + (1 if event is not None else 0)
            changes = (
                Changes()
                .set("seq", num(last))
                .set("updated", num(now))
                .add("rev", num(1))
                .delete("hooks", {"SS": [token]})
            )
            tx = self._tx()
            tx.update(self._guarded(changes, owner, held.last_seq, held.cancel, run_key(run_id)))
            tx.delete(
                hook_key(token), "attribute_not_exists(pk) OR run = :run", {":run": text(run_id)}
            )
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
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None,
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
                    TableName=self.table,
                    FilterExpression="begins_with(pk, :h)",
                    ExpressionAttributeValues={":h": text("hook#")},
                )
                for page in pages:
                    hooks.extend(hook_from_item(item) for item in page.get("Items", []))
            except Exception as exc:
                raise translate(exc, "listing hooks") from exc
        return sorted(hooks, key=lambda h: (h.created_at, h.token))
