"""The SQLite world's schema and its migrations.

The file's schema version lives in ``PRAGMA user_version`` and the file is marked as a durable
database with ``PRAGMA application_id``. :data:`MIGRATIONS` lists one function per version:
``MIGRATIONS[0]`` takes an empty file to version 1, ``MIGRATIONS[1]`` takes version 1 to 2, and so
on. To change the schema, append a function; never edit one that has shipped.

Layout (version 1). Each commit appends every page it dirtied to the write-ahead log (and a
checkpoint later copies each back), so a commit costs more the more pages it dirties; the layout
keeps the common path to as few pages as possible. An inline run (created leased, completed and
released by the same worker) dirties: when created, the newest ``runs`` leaf, one leaf of the id
index, the newest ``events`` leaf and one ``runs_lease`` leaf; per step, the newest ``events``
leaf; when finished, its ``runs`` leaf, the newest ``events`` leaf and the ``runs_lease`` leaf.

* ``runs``: one small row per run, clustered by ``(created_at, id)`` (``WITHOUT ROWID``):
  ``list_runs`` (newest first) reads the table backwards, and new rows land on its newest leaf.
  A unique index finds a run by id. ``run_no`` numbers runs in creation order (one more than the
  newest run's, found from the last event key); it keys the run's log and breaks ties in due
  order. A plain ``append`` (the hot path) writes only to ``events``, so a run's ``last_seq`` is
  its newest event's ``seq``, and its ``updated_at`` is that event's ``created_at`` when the
  event is newer than the row's own last change (``updated_seq`` records which event was newest
  then). Payloads are not in the row, which stays small however big they are.
* ``events``: every run's log and payloads, in one table keyed by an integer
  ``key = run_no * 2**32 + seq`` (see :func:`event_key`), so that a run's log is one key range,
  and the logs of the runs in flight sit at the end of the table, where SQLite appends a row
  without rebalancing the tree. Events have ``seq`` 1 to :data:`MAX_SEQ`; the run's payloads
  live at the seqs in :data:`PAYLOAD_SEQ`, next to the rows written in the same transaction
  (before ``run_created`` for the input, after the log for the output and error) and only when
  set.
* Partial indexes on ``runs``, so that a run is only in those its state needs. SQLite uses a
  partial index only for a query whose ``WHERE`` implies the index's, so every query that needs
  one says so with a term such as ``status = 'pending'`` or ``lease_owner = ?``:

  - ``runs_due``: pending and suspended runs in due order (``claim_due``, ``next_due_at``);
  - ``runs_lease``: running and leased runs by status and lease expiry (``claim_due``,
    ``next_due_at``, ``renew_leases``).

  A running or finished run is never in ``runs_due``; an inline run enters ``runs_lease`` when
  created and leaves it when finished.
* ``hooks``: the live hooks, keyed by token (``WITHOUT ROWID``), with an index by run (and
  creation time, the order ``list_hooks`` returns them in). A hook's row is deleted when it is
  disposed or its run finishes, so the table only holds hooks that can still be resumed; a run
  that never creates one never touches it (finishing it looks the run up in the empty index).
* ``streams``: one row per stream a run's steps wrote to, numbered by ``stream_no`` (its rowid),
  with a unique index by ``(run_id, name)``; its length and, once closed, the writer that
  closed it. A run that never streams never touches the stream tables.
* ``stream_chunks``: every stream's chunks, keyed like ``events`` by one integer
  ``key = stream_no * 2**32 + index`` (see :func:`chunk_key`), so that reading a stream from an
  index is one key range and chunks are appended at the end of the table.
* ``stream_writers``: per stream and writer (a step's operation id), how many positions that
  writer has written, so that a retried attempt's chunks are not appended twice (see
  ``World.write_chunks``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

APPLICATION_ID = 0x64757261
"""``PRAGMA application_id`` of durable databases (ASCII ``dura``)."""

# The event key layout is part of the file format, like the migrations: never change it.
SEQ_BITS = 32
"""``events.key`` is ``run_no << SEQ_BITS | seq``."""
MAX_SEQ = 2**31 - 1
"""The highest event ``seq`` of a run."""
PAYLOAD_SEQ = {"input": 0, "output": 2**31, "error": 2**31 + 1}
"""The ``seq`` (and ``kind``) of the ``events`` rows that hold a run's payloads."""


def event_key(run_no: int, seq: int) -> int:
    """The ``events.key`` of a run's event or payload."""
    return (run_no << SEQ_BITS) + seq


CHUNK_BITS = 32
"""``stream_chunks.key`` is ``stream_no << CHUNK_BITS | index``."""
MAX_CHUNKS = 2**32
"""The most chunks a stream can hold."""


def chunk_key(stream_no: int, index: int) -> int:
    """The ``stream_chunks.key`` of a stream's chunk."""
    return (stream_no << CHUNK_BITS) + index


def _v1_initial(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE runs (
            id TEXT NOT NULL UNIQUE,
            workflow_name TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            run_no INTEGER NOT NULL,
            updated_at REAL NOT NULL,
            updated_seq INTEGER NOT NULL,
            wake_at REAL,
            lease_owner TEXT,
            lease_expires_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            parent_id TEXT,
            PRIMARY KEY (created_at, id)
        ) WITHOUT ROWID
        """
    )
    # claim_due walks each runnable status in due order; next_due_at reads the first entry.
    conn.execute(
        "CREATE INDEX runs_due ON runs (status, wake_at, created_at, run_no) "
        "WHERE status = 'pending' OR status = 'suspended'"
    )
    # claim_due and next_due_at look for running runs whose lease lapsed (or owner died);
    # renew_leases walks it for the runs one owner holds.
    conn.execute(
        "CREATE INDEX runs_lease ON runs (status, lease_expires_at, lease_owner) "
        "WHERE lease_owner IS NOT NULL OR status = 'running'"
    )
    # append's one-statement insert writes key -1 when it must not write (a NULL key would be
    # given a fresh one), and only payload rows may sit past MAX_SEQ: both fail here rather than
    # misfile an event.
    conn.execute(
        f"""
        CREATE TABLE events (
            key INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            op_id TEXT,
            name TEXT,
            data BLOB,
            created_at REAL NOT NULL,
            CHECK (key >= 0 AND (key & {(1 << SEQ_BITS) - 1} <= {MAX_SEQ}
                                 OR kind IN ('output', 'error')))
        )
        """
    )
    # Live hooks: resume_hook finds one by token, finishing or deleting a run drops its own.
    conn.execute(
        """
        CREATE TABLE hooks (
            token TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            op_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            timeout_at REAL,
            schema TEXT
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX hooks_run ON hooks (run_id, created_at)")
    # Streams: a run's stream by name (write_chunks, read_chunks), a run's streams in order
    # (list_streams, delete_runs); stream_no is the rowid, and keys the stream's chunks.
    conn.execute(
        """
        CREATE TABLE streams (
            stream_no INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            length INTEGER NOT NULL DEFAULT 0,
            closed_by TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (run_id, name)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE stream_chunks (
            key INTEGER PRIMARY KEY,
            writer TEXT NOT NULL,
            data BLOB NOT NULL,
            created_at REAL NOT NULL,
            CHECK (key >= 0)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE stream_writers (
            stream_no INTEGER NOT NULL,
            writer TEXT NOT NULL,
            written INTEGER NOT NULL,
            PRIMARY KEY (stream_no, writer)
        ) WITHOUT ROWID
        """
    )


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = [_v1_initial]
"""Migration ``i`` takes a file from version ``i`` to ``i + 1``; they run in order, in one
transaction."""


def schema_version() -> int:
    """The schema version this code writes (the number of migrations)."""
    return len(MIGRATIONS)
