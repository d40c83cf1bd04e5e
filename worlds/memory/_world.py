"""An in-memory :class:`~durable.world.World` guarded by one lock."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from durable._errors import CancelRequested, HookConflict, HookNotFound, LeaseLost
from durable.world import (
    FINISHED_STATUSES,
    SUPERSEDED_BY_CANCEL,
    Event,
    HookRecord,
    NewEvent,
    NewRun,
    RunRecord,
    RunUpdate,
    StreamRecord,
    is_runnable,
    register_world,
)


@dataclass
class _Stream:
    created_at: float
    updated_at: float
    chunks: list[bytes] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    """Per writer: how many positions it has written (see ``World.write_chunks``)."""
    closed_by: str | None = None


class MemoryWorld:
    """Runs and events in dictionaries; optionally driven by a controllable clock."""

    def __init__(self, url: str = "memory://", clock: Callable[[], float] | None = None) -> None:
        self.url = url
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._streams: dict[str, dict[str, _Stream]] = {}
        """Per run, its streams by name, in creation order."""

    def now(self) -> float:
        return self._clock()

    def create_run(
        self, run: NewRun, *, owner: str | None, lease_ttl: float
    ) -> tuple[RunRecord, bool]:
        with self._lock:
            existing = self._runs.get(run.id)
            if existing is not None:
                return existing, False
            now = self.now()
            record = RunRecord(
                id=run.id,
                workflow_name=run.workflow_name,
                status="running" if owner else "pending",
                input=run.input,
                output=None,
                error=None,
                created_at=now,
                updated_at=now,
                wake_at=None if owner else now,
                lease_owner=owner,
                lease_expires_at=now + lease_ttl if owner else None,
                cancel_requested=False,
                parent_id=run.parent_id,
                last_seq=1,
            )
            self._runs[run.id] = record
            self._events[run.id] = [
                Event(run.id, 1, "run_created", None, run.workflow_name, None, now)
            ]
            return record, True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        with self._lock:
            runs = [
                r
                for r in self._runs.values()
                if (status is None or r.status == status)
                and (workflow_name is None or r.workflow_name == workflow_name)
            ]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return runs[:limit]

    def count_runs(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for r in self._runs.values():
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            return self._events.get(run_id, [])[after_seq:]

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.lease_owner != owner:
                raise LeaseLost(run_id)
            if run.cancel_requested and update and update.status in SUPERSEDED_BY_CANCEL:
                raise CancelRequested(run_id)
            now = self.now()
            log = self._events[run_id]
            seq = run.last_seq
            for new in events:
                seq += 1
                log.append(Event(run_id, seq, new.kind, new.op_id, new.name, new.data, now))
            changes: dict[str, object] = {"last_seq": seq, "updated_at": now}
            if update is not None:
                wake_at = update.wake_at
                if update.status == "suspended" and (
                    (update.expected_seq is not None and run.last_seq > update.expected_seq)
                    or run.cancel_requested
                ):
                    wake_at = now  # events (or a cancel) arrived from elsewhere while it ran
                changes.update(status=update.status, wake_at=wake_at)
                if update.status in FINISHED_STATUSES:
                    self._drop_hooks(run_id)
                if update.output is not None:
                    changes["output"] = update.output
                if update.error is not None:
                    changes["error"] = update.error
                if update.release:
                    changes.update(lease_owner=None, lease_expires_at=None)
            self._runs[run_id] = dataclasses.replace(run, **changes)  # type: ignore[arg-type]
            return run.cancel_requested

    def _runnable(self, run: RunRecord, now: float) -> bool:
        return is_runnable(run.status, run.wake_at, run.lease_owner, run.lease_expires_at, now)

    def _lease(self, run: RunRecord, owner: str, lease_ttl: float, now: float) -> RunRecord:
        leased = dataclasses.replace(
            run,
            status="running",
            lease_owner=owner,
            lease_expires_at=now + lease_ttl,
            updated_at=now,
        )
        self._runs[run.id] = leased
        return leased

    def acquire(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            now = self.now()
            if run is None or not self._runnable(run, now):
                return None
            return self._lease(run, owner, lease_ttl, now)

    def reopen(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status != "failed":
                return None
            return self._lease(dataclasses.replace(run, error=None), owner, lease_ttl, self.now())

    def claim_due(
        self,
        owner: str,
        lease_ttl: float,
        limit: int,
        workflow_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            now = self.now()
            names = set(workflow_names) if workflow_names is not None else None
            due = [
                r
                for r in self._runs.values()
                if (names is None or r.workflow_name in names) and self._runnable(r, now)
            ]
            due.sort(key=lambda r: (r.wake_at or r.updated_at, r.created_at))
            return [self._lease(r, owner, lease_ttl, now) for r in due[:limit]]

    def next_due_at(self, workflow_names: Sequence[str] | None = None) -> float | None:
        with self._lock:
            names = set(workflow_names) if workflow_names is not None else None
            times = [
                r.wake_at
                for r in self._runs.values()
                if r.status == "suspended"
                and r.wake_at is not None
                and (names is None or r.workflow_name in names)
            ]
            leases = [
                r.lease_expires_at
                for r in self._runs.values()
                if r.status == "running"
                and r.lease_expires_at is not None
                and (names is None or r.workflow_name in names)
            ]
        candidates = times + leases
        return min(candidates) if candidates else None

    def renew_leases(self, owner: str, lease_ttl: float) -> int:
        with self._lock:
            now = self.now()
            renewed = 0
            for run in list(self._runs.values()):
                if run.lease_owner == owner:
                    self._runs[run.id] = dataclasses.replace(
                        run, lease_expires_at=now + lease_ttl
                    )
                    renewed += 1
            return renewed

    def release(self, run_id: str, owner: str) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.lease_owner != owner:
                return
            self._runs[run_id] = dataclasses.replace(
                run,
                status="pending" if run.status == "running" else run.status,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=self.now(),
            )

    def request_cancel(self, run_id: str) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            if run.status in FINISHED_STATUSES:
                return run
            changes: dict[str, object] = {"cancel_requested": True, "updated_at": self.now()}
            if run.status == "suspended":
                changes["wake_at"] = self.now()
            updated = dataclasses.replace(run, **changes)  # type: ignore[arg-type]
            self._runs[run_id] = updated
            return updated

    def _drop_hooks(self, run_id: str) -> None:
        for token in [t for t, h in self._hooks.items() if h.run_id == run_id]:
            del self._hooks[token]

    def _append_unleased(self, run_id: str, event: NewEvent) -> None:
        run = self._runs[run_id]
        now = self.now()
        seq = run.last_seq + 1
        self._events[run_id].append(
            Event(run_id, seq, event.kind, event.op_id, event.name, event.data, now)
        )
        changes: dict[str, object] = {"last_seq": seq, "updated_at": now}
        if run.status == "suspended":
            changes["wake_at"] = now
        self._runs[run_id] = dataclasses.replace(run, **changes)  # type: ignore[arg-type]

    def create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        with self._lock:
            existing = self._hooks.get(hook.token)
            if existing is not None:
                if (existing.run_id, existing.op_id) == (hook.run_id, hook.op_id):
                    return
                raise HookConflict(hook.token, existing.run_id)
            self.append(hook.run_id, owner, [event])
            self._hooks[hook.token] = hook

    def resume_hook(self, token: str, payload: bytes) -> HookRecord:
        with self._lock:
            hook = self._hooks.get(token)
            if hook is None:
                raise HookNotFound(token)
            if hook.timed_out(self.now()):
                raise HookNotFound(token, hook.timeout_at)
            self._append_unleased(
                hook.run_id, NewEvent("hook_received", hook.op_id, token, payload)
            )
            return hook

    def dispose_hook(
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None = None,
        expected_seq: int | None = None,
    ) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.lease_owner != owner:
                raise LeaseLost(run_id)
            if expected_seq is not None and run.last_seq > expected_seq:
                return False
            hook = self._hooks.get(token)
            if hook is not None and hook.run_id == run_id:
                del self._hooks[token]
            if event is not None:
                self.append(run_id, owner, [event])
            return True

    def get_hook(self, token: str) -> HookRecord | None:
        with self._lock:
            return self._hooks.get(token)

    def list_hooks(self, run_id: str | None = None) -> list[HookRecord]:
        with self._lock:
            hooks = [h for h in self._hooks.values() if run_id is None or h.run_id == run_id]
        return sorted(hooks, key=lambda h: (h.created_at, h.token))

    def delete_runs(self, finished_before: float) -> int:
        with self._lock:
            doomed = [
                r.id
                for r in self._runs.values()
                if r.status in FINISHED_STATUSES
                and r.updated_at < finished_before
                and not self._parent_unfinished(r.parent_id)
            ]
            for run_id in doomed:
                del self._runs[run_id]
                del self._events[run_id]
                self._streams.pop(run_id, None)
            return len(doomed)

    def _parent_unfinished(self, parent_id: str | None) -> bool:
        parent = self._runs.get(parent_id) if parent_id is not None else None
        return parent is not None and parent.status not in FINISHED_STATUSES

    def close(self) -> None:
        pass

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
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.lease_owner != owner:
                raise LeaseLost(run_id)
            now = self.now()
            streams = self._streams.setdefault(run_id, {})
            target = streams.get(stream)
            if target is None:
                target = streams[stream] = _Stream(created_at=now, updated_at=now)
            if target.closed_by is not None:
                return target.closed_by == writer
            mark = target.marks.get(writer, 0)
            fresh = list(chunks[max(0, mark - position) :])
            target.marks[writer] = max(mark, position + len(chunks))
            target.chunks.extend(bytes(chunk) for chunk in fresh)
            if close:
                target.closed_by = writer
            if fresh or close:
                target.updated_at = now
            return True

    def read_chunks(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        with self._lock:
            run = self._runs.get(run_id)
            target = self._streams.get(run_id, {}).get(stream)
            chunks = target.chunks if target is not None else []
            begin = max(start, 0)
            end = len(chunks) if limit is None else min(len(chunks), begin + max(limit, 0))
            ended = run is None or run.status in FINISHED_STATUSES
            closed = (ended or (target is not None and target.closed_by is not None)) and (
                end >= len(chunks)
            )
            return chunks[begin:end], closed

    def list_streams(self, run_id: str) -> list[StreamRecord]:
        with self._lock:
            run = self._runs.get(run_id)
            ended = run is None or run.status in FINISHED_STATUSES
            return [
                StreamRecord(
                    run_id,
                    name,
                    len(s.chunks),
                    ended or s.closed_by is not None,
                    s.created_at,
                    s.updated_at,
                )
                for name, s in self._streams.get(run_id, {}).items()
            ]


register_world("memory", lambda url: MemoryWorld(url))
