"""The SQLite world's schema and its migrations.

The file's schema version lives in ``PRAGMA user_version`` and the file is marked as a durable
database with ``PRAGMA application_id``. :data:`MIGRATIONS` lists one function per version:
``MIGRATIONS[0]`` takes an empty file to version 1, ``MIGRATIONS[1]`` takes version 1 to 2, and so
on. To change the schema, append a function; never edit one that has shipped.

Layout (version 1):

* ``runs``: one row per run. A plain ``append`` (the hot path) writes only to ``events`` so that a
  step completion costs one B-tree page in the write-ahead log; a run's ``last_seq`` is therefore
  the newest event's ``seq``, and its ``updated_at`` is that event's ``created_at`` when the event
  is newer than the row's own last change (``updated_seq`` records which event was newest then).
* ``events``: the logs, clustered by ``(run_id, seq)`` (``WITHOUT ROWID``), so reading a log and
  finding its newest event are index range scans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

APPLICATION_ID = 0x64757261
"""``PRAGMA application_id`` of durable databases (ASCII ``dura``)."""


def _v1_initial(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE runs (
            id TEXT NOT NULL PRIMARY KEY,
            workflow_name TEXT NOT NULL,
            status TEXT NOT NULL,
            input BLOB NOT NULL,
            output BLOB,
            error BLOB,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            updated_seq INTEGER NOT NULL,
            wake_at REAL,
            lease_owner TEXT,
            lease_expires_at REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            parent_id TEXT
        )
        """
    )
    # claim_due scans runnable runs per status in due order; next_due_at reads the first entry.
    conn.execute("CREATE INDEX runs_due ON runs (status, wake_at, created_at)")
    # next_due_at and claim_due look for running runs whose lease has lapsed.
    conn.execute("CREATE INDEX runs_lease ON runs (status, lease_expires_at)")
    # renew_leases touches every run one owner holds.
    conn.execute("CREATE INDEX runs_owner ON runs (lease_owner)")
    # list_runs is newest first (ties broken by id).
    conn.execute("CREATE INDEX runs_created ON runs (created_at, id)")
    conn.execute(
        """
        CREATE TABLE events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            op_id TEXT,
            name TEXT,
            data BLOB,
            created_at REAL NOT NULL,
            PRIMARY KEY (run_id, seq)
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
