"""Appending to a run's log: the one-statement hot path, and group commit of concurrent appends."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from durable._errors import CancelRequested, LeaseLost, WorldError
from durable.world import (
    FINISHED_STATUSES,
    SUPERSEDED_BY_CANCEL,
    NewEvent,
    RunUpdate,
)
from worlds.sqlite import _schema
from worlds.sqlite._connection import Connections, _rollback
from worlds.sqlite._group import PendingAppend
from worlds.sqlite._sql import (
    _APPEND_CHECK,
    _APPEND_ONE,
    _APPLY_UPDATE,
    _BITS,
    _DROP_HOOKS,
    _ERROR,
    _OUTPUT,
    _TOUCH_RUN,
    _WRITE_ROW,
)


class Appending(Connections):
    """``append``, and the transaction bodies that the other writes to a run's log share."""

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        """Append events (and apply ``update``) in one transaction, if ``owner`` holds the lease.

        Returns:
            Whether cancellation has been requested for the run.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
            WorldError: The database failed (locked past the busy timeout, corrupt, ...).
        """
        if self._lock.acquire(blocking=False):
            try:
                return self._append_alone(run_id, owner, events, update)
            finally:
                self._lock.release()
        # Another write holds the lock: queue, and whoever takes the lock next commits every
        # append queued by then in one transaction (see _group).
        mine = PendingAppend(run_id, owner, events, update)
        queue = self._appends
        if queue.join(mine):
            batch: list[PendingAppend] | None = None
            try:
                with self._lock:
                    batch = queue.take()
                    self._append_group(batch)
            finally:
                if batch is None:  # interrupted while waiting for the lock: write nothing
                    queue.withdraw(mine)
                else:
                    queue.finish(batch)
        if mine.error is not None:
            raise mine.error
        return mine.cancel_requested

    def _append_alone(
        self, run_id: str, owner: str, events: Sequence[NewEvent], update: RunUpdate | None
    ) -> bool:
        # Called with self._lock held.
        conn = self._writer()
        try:
            if self._append_one(conn, run_id, owner, events, update):
                return False
            return self._append_many(conn, run_id, owner, events, update)
        except sqlite3.Error as exc:
            raise self._error(exc, f"appending to run {run_id}") from exc

    def _append_group(self, batch: Sequence[PendingAppend]) -> None:
        # Called with self._lock held. Every append in the batch gets its outcome; none raises.
        try:
            if len(batch) == 1:
                only = batch[0]
                only.cancel_requested = self._append_alone(
                    only.run_id, only.owner, only.events, only.update
                )
                return
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, f"appending to {len(batch)} runs") from exc
            try:
                for append in batch:
                    try:
                        append.cancel_requested = self._append_in(conn, append)
                    except WorldError as exc:  # LeaseLost or a full log: refused, nothing written
                        append.error = exc
                conn.execute("COMMIT")
            except sqlite3.Error:
                _rollback(conn)
                # One of them broke the transaction: each goes alone, failing only itself.
                for append in batch:
                    append.error = None
                    try:
                        append.cancel_requested = self._append_alone(
                            append.run_id, append.owner, append.events, append.update
                        )
                    except Exception as exc:  # noqa: BLE001 - handed to the append's caller
                        append.error = exc
            except BaseException:
                _rollback(conn)
                raise
        except BaseException as exc:  # noqa: BLE001 - every caller in the batch re-raises it
            for append in batch:
                if append.error is None:
                    append.error = exc

    def _append_in(self, conn: sqlite3.Connection, append: PendingAppend) -> bool:
        # One append of a group, inside its transaction.
        run_id, owner, events, update = append.run_id, append.owner, append.events, append.update
        if self._append_one(conn, run_id, owner, events, update):
            return False
        return self._append_locked(conn, run_id, owner, events, update)

    def _append_one(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None,
    ) -> bool:
        """The hot path: a single event without an update, as one statement. True if written.

        False: not that shape, or refused (the lease is not held, cancellation was requested; the
        refused statement aborts alone, even inside a transaction): the full path tells which.
        """
        if update is not None or len(events) != 1:
            return False
        new = events[0]
        try:
            conn.execute(
                _APPEND_ONE, (run_id, owner, new.kind, new.op_id, new.name, new.data, self._clock())
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def _append_many(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None,
    ) -> bool:
        # Called with self._lock held; sqlite3 errors are translated by the caller.
        conn.execute("BEGIN IMMEDIATE")
        try:
            cancel_requested = self._append_locked(conn, run_id, owner, events, update)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return cancel_requested

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None,
        checked: Any = None,
    ) -> bool:
        # The body of append, inside a transaction the caller holds. ``checked`` is the row of
        # _APPEND_CHECK if the caller has just read it in this transaction.
        row = checked
        if row is None:
            row = conn.execute(_APPEND_CHECK, (run_id, owner)).fetchone()
        if row is None:
            raise LeaseLost(run_id)
        if row[0] and update is not None and update.status in SUPERSEDED_BY_CANCEL:
            raise CancelRequested(run_id)
        now = self._clock()
        base = row[1] << _BITS
        seq = seen = row[2] or 0
        self._check_room(run_id, seq, len(events))
        rows = [
            (base + seq + i, e.kind, e.op_id, e.name, e.data, now)
            for i, e in enumerate(events, 1)
        ]
        seq += len(events)
        if update is not None:
            wake_at = update.wake_at
            if update.status == "suspended" and (
                (update.expected_seq is not None and seen > update.expected_seq) or row[0]
            ):
                # Events arrived from elsewhere (a resumed hook) while it ran, or a cancel did:
                # due at once, so a worker sees them.
                wake_at = now
            conn.execute(
                _APPLY_UPDATE[update.release],
                (update.status, wake_at, now, seq, run_id),
            )
            if update.output is not None:
                rows.append((base + _OUTPUT, "output", None, None, update.output, now))
            if update.error is not None:
                rows.append((base + _ERROR, "error", None, None, update.error, now))
            if update.status in FINISHED_STATUSES:
                conn.execute(_DROP_HOOKS, (run_id,))
        elif not events:
            conn.execute(_TOUCH_RUN, (now, seq, run_id))
        # Events and payloads in one statement.
        if len(rows) == 1:
            conn.execute(_WRITE_ROW, rows[0])
        elif rows:
            conn.executemany(_WRITE_ROW, rows)
        return bool(row[0])

    def _check_room(self, run_id: str, seq: int, adding: int) -> None:
        if seq + adding > _schema.MAX_SEQ:
            raise WorldError(
                f"run {run_id} cannot record more than {_schema.MAX_SEQ} events "
                f"(it has {seq}) in the durable database {self.path}"
            )
