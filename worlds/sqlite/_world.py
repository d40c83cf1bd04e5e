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
  often than SQLite's default (:data:`CHECKPOINT_BYTES`); neither changes what a commit
  guarantees.
* After ``fork`` the child never touches the parent's connection (SQLite forbids it); it opens its
  own on first use.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from durable._errors import ConfigurationError, HookConflict, HookNotFound, LeaseLost, WorldError
from durable.world import (
    FINISHED_STATUSES,
    Event,
    HookRecord,
    NewEvent,
    NewRun,
    RunRecord,
    RunStatus,
    RunUpdate,
    StreamRecord,
)
from durable.world import owner_is_dead as _owner_is_dead
from worlds.sqlite import _schema
from worlds.sqlite._errors import _is_busy, translate_error
from worlds.sqlite._group import AppendQueue, PendingAppend
from worlds.sqlite._sql import (
    _APPEND_CHECK,
    _APPEND_ONE,
    _APPLY_UPDATE,
    _BITS,
    _CANCEL,
    _CHUNK_BITS,
    _CLAIM,
    _COUNT_RUNS,
    _DELETE_CHUNKS,
    _DELETE_EVENTS,
    _DELETE_HOOK,
    _DELETE_RUN,
    _DELETE_STREAMS,
    _DELETE_WRITERS,
    _DROP_HOOKS,
    _ERROR,
    _FINISHED_BEFORE,
    _GET_HOOK,
    _GET_RUN,
    _GET_RUNS,
    _HOOK_OWNER,
    _IDENTITY,
    _INSERT_CHUNK,
    _INSERT_CREATED,
    _INSERT_EVENT,
    _INSERT_HOOK,
    _INSERT_RUN,
    _LEASE,
    _LEASE_HELD,
    _LEASE_MANY,
    _LEASE_STATE,
    _LIST_HOOKS,
    _LIST_RUNS,
    _LIST_STREAMS,
    _LIVE_OWNERS,
    _NEW_STREAM,
    _NEXT_DUE,
    _OUTPUT,
    _READ_CHUNKS,
    _READ_EVENTS,
    _READ_LOGS,
    _RELEASE,
    _RENEW,
    _RESUME_TARGET,
    _RUN_STATUS,
    _RUN_STREAMS,
    _SET_WRITER_MARK,
    _STREAM,
    _STREAM_STATE,
    _TOUCH_RUN,
    _UPDATE_STREAM,
    _WAKE_NOW,
    _WRITE_ROW,
    _WRITER_MARK,
)

DEFAULT_URL = "sqlite:///.durable/durable.db"
"""The world used when nothing else is configured, relative to the working directory."""
DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a write waits for another process's write lock before failing."""
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL", "EXTRA")
"""Accepted values of the ``synchronous`` URL parameter."""
PAGE_SIZE = 2048
"""Page size of new database files. A commit writes every page it dirtied, whole, to the log, and
the common path dirties about ten pages per run however small its rows, so smaller pages write
fewer bytes (bench/world_sqlite.py: 2 KiB pages make a 3-step run about 15% cheaper than 4 KiB
ones; 1 KiB pages are no cheaper, and unlike 2 KiB ones they are slower for payloads of tens of
KiB, which span more pages)."""
CHECKPOINT_BYTES = 16 * 1024 * 1024
"""Copy the log back into the database once it holds this much (SQLite's default is 1,000 pages).
Each checkpoint syncs both files and copies every page written since the last one, once however
often it was written, so fewer, larger checkpoints cost less per commit (about 10% on the common
path); the log file is then written again from its start."""

# Connections inherited over fork: closing one in the child could disturb the parent's locks or
# checkpoint its log, so the child keeps them referenced and never uses them.
_abandoned: list[sqlite3.Connection] = []
_READERS = 64
"""Read connections a world keeps for reading event logs beside its writing connection: as many
as a worker runs at once, since opening one costs more than the read it serves."""
_PRELOAD_EVENTS = 200
"""``claim_due`` returns the logs of the runs it leases that have at most this many events (a
longer log is read outside the write lock)."""
_READER_CACHE_KIB = 256
"""Page cache of each read connection."""
_open_worlds: weakref.WeakSet[SqliteWorld] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for world in list(_open_worlds):
        world._forget_connection()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


class SqliteWorld:
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

    def __init__(self, url: str = DEFAULT_URL, clock: Callable[[], float] | None = None) -> None:
        path, synchronous, busy_timeout = parse_url(url)
        self.url = url
        """The URL this world was opened from."""
        self.path = path
        """The absolute path of the database file."""
        self.synchronous = synchronous
        """The ``PRAGMA synchronous`` level of this world's connection."""
        self.busy_timeout = busy_timeout
        """Seconds a write waits for another process's write lock before failing."""
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._appends = AppendQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._open()
        _open_worlds.add(self)

    def __repr__(self) -> str:
        return f"SqliteWorld({self.url!r})"

    def __enter__(self) -> SqliteWorld:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    @contextmanager
    def _reading_aside(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A read on a connection of its own, beside the writing one.

        WAL readers wait neither for writers nor for each other, so runs replaying their logs
        do not queue behind the writes of others.
        """
        # The pool has a lock of its own: waiting for the writing connection's would put every
        # read back in the queue of writes.
        with self._readers_lock:
            # Until the main connection is open (it migrates the file first), read on it.
            pooled = self._conn is not None and self._pid == os.getpid() and not self._closed
            conn = self._readers.pop() if pooled and self._readers else None
        if not pooled:
            with self._reading(doing) as main:
                yield main
            return
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False, cached_statements=64,
                )
                conn.execute("PRAGMA query_only = 1")
                # Another connection's commit empties this one's page cache before its next
                # read, so a big cache would only cost memory.
                conn.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc, doing) from exc
        with self._readers_lock:
            if len(self._readers) < _READERS and not self._closed and self._pid == os.getpid():
                self._readers.append(conn)
                return
        conn.close()

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
            if state is None or not _runnable(state[0], state[1], state[2], state[3], now):
                return None
            conn.execute(_LEASE, (owner, now + lease_ttl, now, run_id))
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
        claim = _CLAIM[workflow_names is not None]
        params: dict[str, Any] = {"limit": limit, "names": json.dumps(list(workflow_names or ()))}
        # Idle workers poll often: look without the write lock first, so that polling an idle
        # world never makes other processes' appends wait.
        with self._reading_aside("looking for due runs") as conn:
            params["now"] = self._clock()
            owners = [row[0] for row in conn.execute(_LIVE_OWNERS, (params["now"],))]
            params["dead"] = json.dumps([o for o in owners if _owner_is_dead(o)])
            if not conn.execute(claim, {**params, "limit": 1}).fetchall():
                return []
        with self._transaction("claiming due runs") as conn:
            # Under the write lock: whatever this finds is still runnable when it is leased.
            now = params["now"] = self._clock()
            ids = [row[0] for row in conn.execute(claim, params)]
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

    def create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        """Register a live hook and append its ``hook_created`` event, in one transaction.

        Registering the same token again for the same run and operation (a replay) does nothing.

        Raises:
            HookConflict: another live hook holds the token; nothing was written.
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
        """
        with self._transaction(f"creating hook {hook.token!r} of run {hook.run_id}") as conn:
            existing = conn.execute(_HOOK_OWNER, (hook.token,)).fetchone()
            if existing is not None:
                if (existing[0], existing[1]) == (hook.run_id, hook.op_id):
                    return
                raise HookConflict(hook.token, existing[0])
            self._append_locked(conn, hook.run_id, owner, [event], None)
            conn.execute(
                _INSERT_HOOK,
                (
                    hook.token,
                    hook.run_id,
                    hook.op_id,
                    hook.created_at,
                    hook.timeout_at,
                    hook.schema,
                ),
            )

    def resume_hook(self, token: str, payload: bytes) -> HookRecord:
        """Deliver a payload to the hook's run, which needs no lease.

        Appends a ``hook_received`` event (the hook's ``op_id``, the token as name, ``payload``
        as data) after the run's newest; a suspended run becomes due now.

        Returns:
            The hook.

        Raises:
            HookNotFound: no live hook has this token; nothing was written.
        """
        with self._transaction(f"resuming hook {token!r}") as conn:
            row = conn.execute(_RESUME_TARGET, (token,)).fetchone()
            if row is None:
                raise HookNotFound(token)
            hook = HookRecord(*row[:6])
            status, run_no, seq = row[6], row[7], row[8] or 0
            self._check_room(hook.run_id, seq, 1)
            now = self._clock()
            seq += 1
            conn.execute(
                _INSERT_EVENT,
                ((run_no << _BITS) + seq, "hook_received", hook.op_id, token, payload, now),
            )
            if status == "suspended":
                conn.execute(_WAKE_NOW, (now, seq, hook.run_id))
        return hook

    def dispose_hook(
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None = None,
        expected_seq: int | None = None,
    ) -> bool:
        """End a hook of the run so later resumes raise ``HookNotFound``; append ``event``.

        Returns:
            False, changing nothing, if ``expected_seq`` is given and the run's log has grown
            past it (a payload may have arrived); True otherwise.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
        """
        with self._transaction(f"disposing of hook {token!r} of run {run_id}") as conn:
            checked = conn.execute(_APPEND_CHECK, (run_id, owner)).fetchone()
            if checked is None:
                raise LeaseLost(run_id)
            if expected_seq is not None and (checked[2] or 0) > expected_seq:
                return False
            conn.execute(_DELETE_HOOK, (token, run_id))
            if event is not None:
                self._append_locked(conn, run_id, owner, [event], None, checked)
            return True

    def get_hook(self, token: str) -> HookRecord | None:
        """The live hook with this token, or ``None``."""
        with self._reading(f"reading hook {token}") as conn:
            row = conn.execute(_GET_HOOK, (token,)).fetchone()
        return None if row is None else HookRecord(*row)

    def list_hooks(self, run_id: str | None = None) -> list[HookRecord]:
        """Live hooks, oldest first, optionally of one run."""
        params = () if run_id is None else (run_id,)
        with self._reading("listing hooks") as conn:
            rows = conn.execute(_LIST_HOOKS[run_id is not None], params).fetchall()
        return [HookRecord(*row) for row in rows]

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

    def close(self) -> None:
        """Close the connection; the world may not be used afterwards. Closing twice is fine."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            with self._readers_lock:
                readers, self._readers = self._readers, []
            _open_worlds.discard(self)
            for reader in readers:
                if self._pid == os.getpid():
                    reader.close()
            if conn is None:
                return
            if self._pid != os.getpid():
                _abandoned.append(conn)
                return
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise self._error(exc, "closing it") from exc

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
        """Append chunks to a run's stream, if ``owner`` holds the lease (one transaction).

        Chunks at ``position`` + i below the writer's high-water mark were written by an earlier
        attempt and are dropped (see ``World.write_chunks`` for the full contract).

        Returns:
            False if another writer had closed the stream (nothing was written); True otherwise.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
            WorldError: The database failed, or the stream would exceed its size limit.
        """
        with self._transaction(f"writing to stream {stream!r} of run {run_id}") as conn:
            if conn.execute(_LEASE_HELD, (run_id, owner)).fetchone() is None:
                raise LeaseLost(run_id)
            now = self._clock()
            row = conn.execute(_STREAM, (run_id, stream)).fetchone()
            if row is None:
                row = (conn.execute(_NEW_STREAM, (run_id, stream, now)).lastrowid, 0, None)
            stream_no, length, closed_by = row
            if closed_by is not None:
                return bool(closed_by == writer)
            found = conn.execute(_WRITER_MARK, (stream_no, writer)).fetchone()
            mark = found[0] if found is not None else 0
            fresh = chunks[max(0, mark - position) :]
            if length + len(fresh) > _schema.MAX_CHUNKS:
                raise WorldError(
                    f"stream {stream!r} of run {run_id} cannot hold more than "
                    f"{_schema.MAX_CHUNKS} chunks in the durable database {self.path}"
                )
            if position + len(chunks) > mark:
                conn.execute(_SET_WRITER_MARK, (stream_no, writer, position + len(chunks)))
            base = stream_no << _CHUNK_BITS
            conn.executemany(
                _INSERT_CHUNK,
                [(base + length + i, writer, chunk, now) for i, chunk in enumerate(fresh)],
            )
            if fresh or close:
                conn.execute(
                    _UPDATE_STREAM,
                    (length + len(fresh), now, writer if close else None, stream_no),
                )
            return True

    def read_chunks(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        """The stream's chunks from index ``start`` (at most ``limit``), and whether it is closed.

        Closed means no chunk can follow the ones returned: the stream was closed, or its run
        finished (or does not exist), and the chunks returned reach its end.
        """
        with self._reading(f"reading stream {stream!r} of run {run_id}") as conn:
            # One read transaction, so that the length and closed flag match the chunks read.
            conn.execute("BEGIN")
            try:
                stream_no, length, closed, ended = conn.execute(
                    _STREAM_STATE, (run_id, stream)
                ).fetchone()
                length = length or 0
                begin = max(start, 0)
                end = length if limit is None else min(length, begin + max(limit, 0))
                chunks: list[bytes] = []
                if stream_no is not None and begin < end:
                    base = stream_no << _CHUNK_BITS
                    rows = conn.execute(_READ_CHUNKS, (base + begin, base + end))
                    chunks = [row[0] for row in rows]
            finally:
                _rollback(conn)
        return chunks, bool(closed or ended) and end >= length

    def list_streams(self, run_id: str) -> list[StreamRecord]:
        """The run's streams, in the order they were first written to."""
        with self._reading(f"listing the streams of run {run_id}") as conn:
            rows = conn.execute(_LIST_STREAMS, (run_id,)).fetchall()
        return [
            StreamRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5]) for row in rows
        ]

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

    # -- connection management -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorldError(
                f"cannot create the directory {self.path.parent} for the durable database: "
                f"{exc.strerror or exc}; check the path in DURABLE_WORLD and its permissions"
            ) from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            _check_identity(conn, self.path)
            # Only takes effect on a new file (the first write fixes a file's page size).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            _use_wal(conn, self.busy_timeout)
            # Truncate the log back to 64 MiB after a checkpoint (a big delete_runs can grow it).
            conn.execute("PRAGMA journal_size_limit = 67108864").fetchall()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(1, CHECKPOINT_BYTES // page_size)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            _migrate(conn, self.path)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "opening it") from exc
            raise
        return conn

    def _writer(self) -> sqlite3.Connection:
        # Called with self._lock held: the writing connection, (re)opened if need be.
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            conn = self._reconnect()
        return conn

    def _reconnect(self) -> sqlite3.Connection:
        # Called with self._lock held: the world was closed, or this is a child process that has
        # not used the world since fork.
        if self._closed:
            raise WorldError(f"the sqlite world at {self.path} is closed; open a new one")
        if self._conn is not None:
            _abandoned.append(self._conn)
            self._conn = None
        self._pid = os.getpid()
        self._conn = self._open()
        return self._conn

    def _forget_connection(self) -> None:
        # In a freshly forked child (one thread): the lock may have been held by a parent thread
        # that does not exist here, and the connection belongs to the parent.
        self._lock = threading.Lock()
        self._appends = AppendQueue()
        self._readers_lock = threading.Lock()
        _abandoned.extend(self._readers)
        self._readers = []
        if self._conn is not None:
            _abandoned.append(self._conn)
            self._conn = None

    @contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._writer()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    def _error(self, exc: sqlite3.Error, doing: str) -> WorldError:
        return translate_error(exc, self.path, doing, self.busy_timeout)


def parse_url(url: str) -> tuple[Path, str, float]:
    """Split a ``sqlite://`` world URL into its file path and settings.

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, optionally with
            ``?synchronous=NORMAL|FULL|EXTRA`` and ``&busy_timeout=SECONDS``.

    Returns:
        The absolute path (relative paths are taken from the working directory now), the
        synchronous level and the busy timeout in seconds.

    Raises:
        ConfigurationError: The URL is not a valid sqlite world URL.
    """
    scheme, sep, rest = url.partition("://")
    location, _, query = rest.partition("?")
    if scheme != "sqlite" or not sep or not location.startswith("/") or location == "/":
        raise ConfigurationError(
            f"invalid sqlite world URL {url!r}: use sqlite:///relative/path.db (relative to the "
            "working directory) or sqlite:////absolute/path.db"
        )
    name = unquote(location[1:])
    if name == ":memory:":
        raise ConfigurationError(
            f"{url!r}: an in-memory SQLite database cannot be shared between workers; use "
            "memory:// for an in-memory world"
        )
    path = Path(os.path.abspath(name))
    synchronous = "NORMAL"
    busy_timeout = DEFAULT_BUSY_TIMEOUT
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "synchronous":
            synchronous = value.upper()
            if synchronous not in SYNCHRONOUS_LEVELS:
                raise ConfigurationError(
                    f"invalid synchronous={value!r} in {url!r}: use one of "
                    f"{', '.join(SYNCHRONOUS_LEVELS)}"
                )
        elif key == "busy_timeout":
            try:
                busy_timeout = float(value)
            except ValueError:
                busy_timeout = math.nan
            if not math.isfinite(busy_timeout) or busy_timeout < 0:
                raise ConfigurationError(
                    f"invalid busy_timeout={value!r} in {url!r}: give a number of seconds >= 0"
                )
        else:
            raise ConfigurationError(
                f"unknown parameter {key!r} in {url!r}: sqlite worlds accept synchronous= and "
                "busy_timeout="
            )
    return path, synchronous, busy_timeout


def _rollback(conn: sqlite3.Connection) -> None:
    # The original error is the one worth reporting; a failed rollback only means SQLite has
    # already rolled back.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to write-ahead logging (a no-op once any process has done it).

    Switching needs the file to itself for a moment, and SQLite reports "database is locked" at
    once rather than waiting when another process is opening it too, so retry until the busy
    timeout.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _check_identity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse files that are another application's SQLite database, before writing anything."""
    # One statement, so one snapshot: another process may be creating the schema right now.
    app_id, version, has_objects = conn.execute(_IDENTITY).fetchone()
    if app_id != _schema.APPLICATION_ID and (app_id != 0 or has_objects):
        raise WorldError(
            f"the file {path} is a SQLite database but not a durable one (application_id "
            f"{app_id:#x}, user_version {version}); durable did not modify it. Point "
            "DURABLE_WORLD at another file, e.g. DURABLE_WORLD=sqlite:///.durable/durable.db"
        )
    if version > _schema.schema_version():
        raise WorldError(
            f"the durable database {path} has schema version {version}, written by a newer "
            f"version of durable (this one understands up to {_schema.schema_version()}): "
            "upgrade durable (pip install -U durable-sdk) in every process that uses it"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file's schema up to date, once, even if several processes open it at once."""
    target = _schema.schema_version()
    if conn.execute("PRAGMA user_version").fetchone()[0] == target:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated (or created) the file while we waited for the lock.
        _check_identity(conn, path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for migration in _schema.MIGRATIONS[version:]:
            migration(conn)
        conn.execute(f"PRAGMA application_id = {_schema.APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _runnable(
    status: str,
    wake_at: float | None,
    lease_owner: str | None,
    lease_expires_at: float | None,
    now: float,
) -> bool:
    # Mirrors MemoryWorld._runnable.
    if status == "pending":
        return lease_owner is None
    if status == "suspended":
        return wake_at is not None and wake_at <= now
    if status == "running":
        return (lease_expires_at or 0.0) <= now or _owner_is_dead(lease_owner)
    return False


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
