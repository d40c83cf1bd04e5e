"""A :class:`~durable.world.World` in one SQLite file, shared by any number of processes.

Design notes:

* One connection per :class:`SqliteWorld`, guarded by a lock; the connection is in autocommit
  mode (``isolation_level=None``). A write is either a single statement or an explicit
  ``BEGIN IMMEDIATE`` ... ``COMMIT``; both take the database's write lock before reading
  anything, so a check and the write that depends on it (is the lease ours? is this run due?)
  see the latest committed state and no other process can write in between. Leases therefore
  never need compare-and-swap retries: the check and the update are serialized.
* The journal is a write-ahead log; ``synchronous=NORMAL`` (the default) makes a commit durable
  against a process crash and keeps the database consistent across a power loss, ``FULL`` also
  makes the last commits survive a power loss.
* ``append`` is the hot path (one call per step). A single event without a :class:`RunUpdate`
  is one ``INSERT`` statement that checks the lease and computes the sequence number itself; it
  does not rewrite the run's row, so a commit adds a single page to the log and costs about as
  much as a bare insert. See ``_schema`` for how ``last_seq`` and ``updated_at`` are derived
  from the newest event, and for how the layout keeps the pages other commits dirty few.
  Everything else takes a ``BEGIN IMMEDIATE`` transaction.
* Hooks live in their own table (see ``_schema``). ``resume_hook`` appends to a run without its
  lease, under the same write lock as every other append, so concurrent resumes (from any
  process) get consecutive sequence numbers and a worker's next append comes after them.
* New files use small pages (:data:`PAGE_SIZE`) and every connection checkpoints the log less
  often than SQLite's default (:data:`CHECKPOINT_BYTES`); a thread of the world copies most of
  the log back beside the writes (``_checkpointer``), so the commit that reaches the limit has
  little left to copy. None of this changes what a commit guarantees.
* After ``fork`` the child never touches the parent's connection (SQLite forbids it); it opens its
  own on first use.

:class:`SqliteWorld` keeps runs, leases and retention here and inherits the rest: connections
(``_connection``), appends (``_appending``), hooks (``_hooks``) and streams (``_streams``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from durable._errors import WorldError
from durable.world import (
    FINISHED_STATUSES,
    Event,
    NewRun,
    RunRecord,
    RunStatus,
    is_runnable,
)
from durable.world import owner_is_dead as _owner_is_dead
from worlds.sqlite._connection import (
    CHECKPOINT_BYTES,
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_URL,
    PAGE_SIZE,
    SYNCHRONOUS_LEVELS,
    parse_url,
)
from worlds.sqlite._hooks import Hooks
from worlds.sqlite._sql import (
    _CANCEL,
    _CLAIM,
    _CLEAR_ERROR,
    _COUNT_RUNS,
    _DELETE_CHUNKS,
    _DELETE_EVENTS,
    _DELETE_RUN,
    _DELETE_STREAMS,
    _DELETE_WRITERS,
    _DROP_HOOKS,
    _FINISHED_BEFORE,
    _GET_RUN,
    _GET_RUNS,
    _INSERT_CREATED,
    _INSERT_RUN,
    _LEASE,
    _LEASE_MANY,
    _LEASE_STATE,
    _LIST_RUNS,
    _LIVE_OWNERS,
    _NEXT_DUE,
    _READ_EVENTS,
    _READ_LOGS,
    _RELEASE,
    _RENEW,
    _REOPEN,
    _RUN_STATUS,
    _RUN_STREAMS,
    first_due,
)
from worlds.sqlite._streams import Streams

__all__ = [
    "CHECKPOINT_BYTES",
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_URL",
    "PAGE_SIZE",
    "SYNCHRONOUS_LEVELS",
    "SqliteWorld",
    "parse_url",
]

_FILE_CHECK_SECONDS = 2.0
"""How often ``claim_due`` looks whether the database file is still the one it opened."""

_PRELOAD_EVENTS = 200
"""``claim_due`` returns the logs of the runs it leases that have at most this many events (a
longer log is read outside the write lock)."""


class SqliteWorld(Hooks, Streams):
    """Runs and their event logs in a SQLite file (the embedded default world).

    Any number of ``SqliteWorld`` objects, in any number of threads and processes on one host,
    may use the same file at once: every write is one transaction under SQLite's write lock, and
    a lease is only ever taken by a write that first checks it is free.

    Args:
        url: ``sqlite:///relative/path.db`` (relative to the working directory) or
            ``sqlite:////absolute/path.db``, with optional query parameters
            ``synchronous=NORMAL|FULL|EXTRA`` (default ``NORMAL``) and ``busy_timeout=SECONDS``
            (default 30): how long a write waits for another process's write lock.
        clock: Returns the current time in epoch seconds; defaults to :func:`time.time`. Tests
            pass a fake clock to control due times and lease expiry.

    Raises:
        ConfigurationError: The URL is malformed or has an unknown parameter.
        WorldError: The file cannot be opened, is not a durable database, is corrupt, or was
            written by a newer version of durable.
    """

    _claims_idle = True
    """The last ``claim_due`` found nothing (see there)."""
    _file_id: tuple[int, int] | None = None
    """The database file's device and inode when ``claim_due`` first looked."""
    _next_file_check = 0.0

    def _check_same_file(self) -> None:
        """Stop a worker whose database file was deleted or replaced under it.

        Its open connections would go on reading and writing the unlinked file, where no other
        process sees its work, while processes opening the path get another, empty world.

        Raises:
            WorldError: the file is gone or another one (not transient: the worker stops).
        """
        now = time.monotonic()
        if now < self._next_file_check:
            return
        self._next_file_check = now + _FILE_CHECK_SECONDS
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            found = None
        else:
            found = (stat.st_dev, stat.st_ino)
        if self._file_id is None:
            self._file_id = found
        elif found != self._file_id:
            what = "deleted" if found is None else "replaced by another file"
            raise WorldError(
                f"the database file {os.path.abspath(self.path)} was {what} while this process "
                "had it open: what it records now goes where no other process sees it. Stop "
                "this process and start it again on the file the others use"
            )

    # -- the World protocol ----------------------------------------------------------------------

    def now(self) -> float:
        """Current time in epoch seconds as this world sees it."""
        return self._clock()

    def create_run(
        self, run: NewRun, *, owner: str | None, lease_ttl: float
    ) -> tuple[RunRecord, bool]:
        """Record a new run with a ``run_created`` event, or return the existing one.

        Args:
            run: The run to create.
            owner: Lease the new run to this worker (status ``running``); ``None`` creates it
                ``pending`` and due now.
            lease_ttl: Seconds the lease lasts.

        Returns:
            The stored record and whether this call created it.
        """
        with self._transaction(f"creating run {run.id}") as conn:
            now = self._clock()
            status: RunStatus = "running" if owner else "pending"
            wake_at = None if owner else now
            expires = now + lease_ttl if owner else None
            inserted = conn.execute(
                _INSERT_RUN,
                (run.id, run.workflow_name, status, now, wake_at, owner, expires, run.parent_id),
            ).rowcount
            if not inserted:
                return _record(conn.execute(_GET_RUN, (run.id,)).fetchone()), False
            conn.execute(_INSERT_CREATED, (run.id, run.input, run.workflow_name, now))
        # What was just written; reading it back would cost a query.
        record = RunRecord(
            id=run.id,
            workflow_name=run.workflow_name,
            status=status,
            input=run.input,
            output=None,
            error=None,
            created_at=now,
            updated_at=now,
            wake_at=wake_at,
            lease_owner=owner,
            lease_expires_at=expires,
            cancel_requested=False,
            parent_id=run.parent_id,
            last_seq=1,
        )
        return record, True

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        with self._reading(f"reading run {run_id}") as conn:
            row = conn.execute(_GET_RUN, (run_id,)).fetchone()
        return None if row is None else _record(row)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by status and workflow name."""
        with self._reading("listing runs") as conn:
            rows = conn.execute(
                _LIST_RUNS, (status, workflow_name, limit if limit >= 0 else -1)
            ).fetchall()
        records = [_record(row) for row in rows]
        return records[:limit] if limit < 0 else records

    def count_runs(self) -> dict[str, int]:
        """Number of runs by status (statuses without runs are left out)."""
        with self._reading("counting runs") as conn:
            return {status: count for status, count in conn.execute(_COUNT_RUNS)}

    def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with ``seq > after_seq``, oldest first."""
        with self._reading_aside(f"reading the events of run {run_id}") as conn:
            rows = conn.execute(_READ_EVENTS, (run_id, after_seq)).fetchall()
        return [Event(*row) for row in rows]

    def acquire(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        """Lease one run if it is runnable now and mark it ``running``.

        Runnable: pending; suspended with a wake-up time that has come; running with a lapsed
        lease or a dead owner. Finished runs never are.

        Returns:
            The leased record, or ``None`` if the run does not exist or is not runnable.
        """
        with self._transaction(f"leasing run {run_id}") as conn:
            state = conn.execute(_LEASE_STATE, (run_id,)).fetchone()
            now = self._clock()
            if state is None or not is_runnable(state[0], state[1], state[2], state[3], now):
                return None
            conn.execute(_LEASE, (owner, now + lease_ttl, now, run_id))
            return _record(conn.execute(_GET_RUN, (run_id,)).fetchone())

    def reopen(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        """Lease a failed run to ``owner`` again, to be retried (see ``World.reopen``)."""
        with self._transaction(f"reopening run {run_id}") as conn:
            now = self._clock()
            if conn.execute(_REOPEN, (owner, now + lease_ttl, now, run_id)).rowcount != 1:
                return None
            conn.execute(_CLEAR_ERROR, (run_id,))
            return _record(conn.execute(_GET_RUN, (run_id,)).fetchone())

    def claim_due(
        self,
        owner: str,
        lease_ttl: float,
        limit: int,
        workflow_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runnable runs (see :meth:`acquire`), oldest due first.

        Args:
            owner: The worker taking the leases.
            lease_ttl: Seconds the leases last.
            limit: The most runs to lease.
            workflow_names: Only lease runs of these workflows (``None``: any).

        Returns:
            The leased records in due order.
        """
        if limit <= 0:
            return []
        self._check_same_file()
        claim = _CLAIM[workflow_names is not None]
        params: dict[str, Any] = {"limit": limit, "names": json.dumps(list(workflow_names or ()))}
        if self._claims_idle:
            # Idle workers poll often: look without the write lock first, so that polling an idle
            # world never makes other processes' appends wait. (Not while claims find work: the
            # look then only costs a read on a connection whose cache every commit empties.)
            with self._reading_aside("looking for due runs") as conn:
                params["now"] = self._clock()
                params["dead"] = _dead_owners(conn, params["now"])
                probe = {**params, "limit": 1}
                if not any(conn.execute(branch, probe).fetchone() for branch in claim):
                    return []
        with self._transaction("claiming due runs") as conn:
            # Under the write lock: whatever this finds is still runnable when it is leased.
            now = params["now"] = self._clock()
            if "dead" not in params:
                params["dead"] = _dead_owners(conn, now)
            due = [row for branch in claim for row in conn.execute(branch, params)]
            ids = first_due(due, limit)
            self._claims_idle = not ids
            if not ids:
                return []
            batch = json.dumps(ids)
            conn.execute(_LEASE_MANY, (owner, now + lease_ttl, now, batch))
            rows = conn.execute(_GET_RUNS, (batch,)).fetchall()
            # Short logs come along, read in this snapshot by this connection (whose cache the
            # others' commits have not emptied): one read for the batch, not one per run.
            short = [row[0] for row in rows if 1 < row[13] <= _PRELOAD_EVENTS]
            logs: dict[str, list[Event]] = {run_id: [] for run_id in short}
            if short:
                for event in conn.execute(_READ_LOGS, (json.dumps(short),)):
                    logs[event[0]].append(Event(*event))
        order = {run_id: i for i, run_id in enumerate(ids)}
        rows.sort(key=lambda row: order[row[0]])
        return [_record(row, logs.get(row[0])) for row in rows]

    def next_due_at(self, workflow_names: Sequence[str] | None = None) -> float | None:
        """The earliest wake-up time of a suspended run or lease expiry of a running one.

        Args:
            workflow_names: Only consider runs of these workflows (``None``: any).
        """
        names = json.dumps(list(workflow_names or ()))
        with self._reading("finding the next due run") as conn:
            row = conn.execute(_NEXT_DUE[workflow_names is not None], {"names": names}).fetchone()
        due: float | None = row[0]
        return due

    def renew_leases(self, owner: str, lease_ttl: float) -> int:
        """Extend every lease ``owner`` holds to ``lease_ttl`` from now; returns how many."""
        with self._transaction("renewing leases") as conn:
            return conn.execute(_RENEW, (self._clock() + lease_ttl, owner)).rowcount

    def release(self, run_id: str, owner: str) -> None:
        """Give a leased run back (``running`` becomes ``pending``); no-op for non-owners."""
        with self._transaction(f"releasing run {run_id}") as conn:
            conn.execute(_RELEASE, (self._clock(), run_id, owner))

    def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask a run to stop at its next durable point; a suspended run becomes due now.

        Returns:
            The updated record (unchanged if the run has finished), or ``None`` if there is no
            such run.
        """
        with self._transaction(f"cancelling run {run_id}") as conn:
            row = conn.execute(_RUN_STATUS, (run_id,)).fetchone()
            if row is None:
                return None
            if row[0] not in FINISHED_STATUSES:
                now = self._clock()
                conn.execute(_CANCEL, (now, now, run_id))
            return _record(conn.execute(_GET_RUN, (run_id,)).fetchone())

    def delete_runs(self, finished_before: float) -> int:
        """Remove finished runs last changed before a time, with their events and hooks.

        Returns:
            How many runs were removed.
        """
        with self._transaction("deleting finished runs") as conn:
            doomed = conn.execute(_FINISHED_BEFORE, (finished_before,)).fetchall()
            conn.executemany(_DELETE_EVENTS, [(run_no,) for _, run_no in doomed])
            conn.executemany(_DROP_HOOKS, [(run_id,) for run_id, _ in doomed])
            streams = [
                (stream_no,)
                for run_id, _ in doomed
                for (stream_no,) in conn.execute(_RUN_STREAMS, (run_id,))
            ]
            conn.executemany(_DELETE_CHUNKS, streams)
            conn.executemany(_DELETE_WRITERS, streams)
            conn.executemany(_DELETE_STREAMS, [(run_id,) for run_id, _ in doomed])
            conn.executemany(_DELETE_RUN, [(run_id,) for run_id, _ in doomed])
        return len(doomed)

    def compact(self) -> tuple[int, int]:
        """Give the space of deleted runs back to the file system (``VACUUM``).

        SQLite reuses the pages that ``delete_runs`` frees, so the file stops growing, but it
        only shrinks when rewritten: this copies the live data into a new file, holding the
        write lock meanwhile (other writers wait, up to the busy timeout), and needs about as
        much free disk as the data.

        Returns:
            The bytes of the database and its log before and after.
        """
        before = self.bytes_on_disk() or 0
        with self._lock:
            conn = self._writer()
            try:
                conn.execute("VACUUM")
                # The rewritten file goes through the log: copy it back, so the file shrinks now.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "compacting it (VACUUM)") from exc
        return before, self.bytes_on_disk() or 0

    def bytes_on_disk(self) -> int | None:
        """Bytes of the database and its log, where recent writes stay until a checkpoint.

        None if neither file exists.
        """
        total, found = 0, False
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
                found = True
            except OSError:
                continue
        return total if found else None


def _dead_owners(conn: sqlite3.Connection, now: float) -> str:
    """The owners of live leases whose process has died (JSON), for the claim query."""
    owners = [row[0] for row in conn.execute(_LIVE_OWNERS, (now,))]
    return json.dumps([owner for owner in owners if _owner_is_dead(owner)])


def _record(row: Any, events: Sequence[Event] | None = None) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow_name=row[1],
        status=row[2],
        input=row[3],
        output=row[4],
        error=row[5],
        created_at=row[6],
        updated_at=row[7],
        wake_at=row[8],
        lease_owner=row[9],
        lease_expires_at=row[10],
        cancel_requested=bool(row[11]),
        parent_id=row[12],
        last_seq=row[13],
        events=events,
    )
