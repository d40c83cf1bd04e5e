"""The SQL the SQLite world runs, and SQLite's result codes.

Kept apart from ``_world`` so the world reads as behaviour; every statement is a constant so that
SQLite's statement cache reuses its compiled form.
"""

from __future__ import annotations

from durable.world import FINISHED_STATUSES
from worlds.sqlite import _schema

# Primary SQLite result codes (the low byte of an extended code).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

_FINISHED_SQL = ", ".join(f"'{status}'" for status in sorted(FINISHED_STATUSES))

# A run's rows in events (see _schema): keys from its base, events at base + seq (seq 1 to
# MAX_SEQ), payloads at base + PAYLOAD_SEQ[kind].
_BITS = _schema.SEQ_BITS
_END = _schema.MAX_SEQ + 1
_INPUT, _OUTPUT, _ERROR = (_schema.PAYLOAD_SEQ[kind] for kind in ("input", "output", "error"))


def _newest_key(run: str) -> str:
    """The key of the newest event of the run whose row is ``run`` (NULL if it has none)."""
    base = f"({run}.run_no << {_BITS})"
    return f"(SELECT MAX(key) FROM events WHERE key > {base} AND key < {base} + {_END})"


# A run's newest event, and its updated_at: the row's own, unless an event appended later (a
# plain append does not touch the row) is newer.
_LAST_EVENT_JOIN = f"LEFT JOIN events AS e ON e.key = {_newest_key('r')}"
_LAST_SEQ = f"(e.key - (r.run_no << {_BITS}))"
_UPDATED_AT = f"CASE WHEN {_LAST_SEQ} > r.updated_seq THEN e.created_at ELSE r.updated_at END"
_PAYLOADS = ", ".join(
    f"(SELECT data FROM events WHERE key = (r.run_no << {_BITS}) + {seq})"
    for seq in (_INPUT, _OUTPUT, _ERROR)
)
_SELECT_RECORD = (
    f"SELECT r.id, r.workflow_name, r.status, {_PAYLOADS}, r.created_at, "
    f"{_UPDATED_AT}, r.wake_at, r.lease_owner, r.lease_expires_at, r.cancel_requested, "
    f"r.parent_id, COALESCE({_LAST_SEQ}, 0) FROM runs AS r {_LAST_EVENT_JOIN}"
)
# For UPDATE statements that change updated_at: remember which event was newest at that time.
_CURRENT_SEQ = f"COALESCE({_newest_key('runs')} - (runs.run_no << {_BITS}), 0)"

_GET_RUN = f"{_SELECT_RECORD} WHERE r.id = ?"
_GET_RUNS = f"{_SELECT_RECORD} WHERE r.id IN (SELECT value FROM json_each(?))"
# Newest first is the table's own order, read backwards.
_LIST_RUNS = (
    f"{_SELECT_RECORD} WHERE (?1 IS NULL OR r.status = ?1) AND (?2 IS NULL OR r.workflow_name = ?2)"
    " ORDER BY r.created_at DESC, r.id DESC LIMIT ?3"
)
_COUNT_RUNS = "SELECT status, COUNT(*) FROM runs GROUP BY status"
# run_no: one more than the newest run's (the last key in events belongs to it; every run has
# its input and run_created rows). Deleting the newest run may free its number for the next one,
# which is still newer than every run left.
_INSERT_RUN = (
    "INSERT INTO runs (id, workflow_name, status, created_at, run_no, updated_at, updated_seq, "
    "wake_at, lease_owner, lease_expires_at, parent_id) VALUES (?1, ?2, ?3, ?4, "
    f"COALESCE((SELECT MAX(key) FROM events) >> {_BITS}, 0) + 1, ?4, 1, ?5, ?6, ?7, ?8) "
    "ON CONFLICT (id) DO NOTHING"
)
# The input and the run_created event, side by side at the end of events.
_NEW_BASE = f"((SELECT run_no FROM runs WHERE id = ?1) << {_BITS})"
_INSERT_CREATED = (
    "INSERT INTO events (key, kind, name, data, created_at) VALUES "
    f"({_NEW_BASE} + {_INPUT}, 'input', NULL, ?2, ?4), "
    f"({_NEW_BASE} + 1, 'run_created', ?3, NULL, ?4)"
)
_INSERT_EVENT = (
    "INSERT INTO events (key, kind, op_id, name, data, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
# An event or a payload row. A payload is replaced if set again; an event whose key is taken is
# refused: the update moves the existing row to key -1, which fails the table's CHECK.
_WRITE_ROW = (
    "INSERT INTO events (key, kind, op_id, name, data, created_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET data = excluded.data, created_at = excluded.created_at, "
    "key = CASE WHEN excluded.kind IN ('output', 'error') THEN key ELSE -1 END"
)
_READ_EVENTS = (
    f"SELECT ?1, e.key - r.base, e.kind, e.op_id, e.name, e.data, e.created_at "
    f"FROM (SELECT run_no << {_BITS} AS base FROM runs WHERE id = ?1) AS r "
    f"JOIN events AS e ON e.key > r.base + MAX(?2, 0) AND e.key < r.base + {_END} "
    "ORDER BY e.key"
)
# The logs of several runs (claim_due), each oldest first.
_READ_LOGS = (
    f"SELECT r.id, e.key - r.base, e.kind, e.op_id, e.name, e.data, e.created_at "
    f"FROM (SELECT id, run_no << {_BITS} AS base FROM runs "
    "WHERE id IN (SELECT value FROM json_each(?1))) AS r "
    f"JOIN events AS e ON e.key > r.base AND e.key < r.base + {_END} "
    "ORDER BY e.key"
)
# The hot path: one event, no run update, as one statement (one implicit transaction: SQLite takes
# the write lock before the statement reads anything). The key is -1, which fails the table's CHECK
# constraint and writes nothing, unless the owner holds the lease and no cancellation was requested
# (the CHECK also refuses an event past MAX_SEQ); append() then takes the full path, which tells
# these cases apart. (A NULL key would not do: SQLite gives a NULL integer primary key a fresh
# value.) A plain INSERT ... VALUES keeps this as cheap as a bare insert (INSERT ... SELECT and
# RETURNING both buffer their rows).
_APPEND_ONE = (
    "INSERT INTO events (key, kind, op_id, name, data, created_at) VALUES (COALESCE(("
    f"SELECT {_newest_key('r')} + 1 FROM runs AS r "
    "WHERE r.id = ?1 AND r.lease_owner = ?2 AND r.cancel_requested = 0), -1), ?3, ?4, ?5, ?6, ?7)"
)
_APPEND_CHECK = (
    f"SELECT r.cancel_requested, r.run_no, {_newest_key('r')} - (r.run_no << {_BITS}) "
    "FROM runs AS r WHERE r.id = ? AND r.lease_owner = ?"
)
# Two statements rather than a CASE, so that keeping the lease leaves the lease index alone.
_APPLY_UPDATE = {
    release: (
        "UPDATE runs SET status = ?, wake_at = ?, updated_at = ?, updated_seq = ?"
        + (", lease_owner = NULL, lease_expires_at = NULL" if release else "")
        + " WHERE id = ?"
    )
    for release in (False, True)
}
_TOUCH_RUN = "UPDATE runs SET updated_at = ?, updated_seq = ? WHERE id = ?"
_LEASE_STATE = "SELECT status, wake_at, lease_owner, lease_expires_at FROM runs WHERE id = ?"
_LEASE = (
    "UPDATE runs SET status = 'running', lease_owner = ?, lease_expires_at = ?, updated_at = ?, "
    f"updated_seq = {_CURRENT_SEQ} WHERE id = ?"
)
_REOPEN = f"{_LEASE} AND status = 'failed'"
_CLEAR_ERROR = (
    f"DELETE FROM events WHERE key = ((SELECT run_no FROM runs WHERE id = ?) << {_BITS}) + {_ERROR}"
)
_LEASE_MANY = (
    "UPDATE runs SET status = 'running', lease_owner = ?1, lease_expires_at = ?2, "
    f"updated_at = ?3, updated_seq = {_CURRENT_SEQ} "
    "WHERE id IN (SELECT value FROM json_each(?4))"
)
# Both pinned to the lease index (INDEXED BY fails loudly should a change make it unusable): the
# owner is not the index's first column, yet walking the index beats reading every run.
_LIVE_OWNERS = (
    "SELECT DISTINCT lease_owner FROM runs INDEXED BY runs_lease "
    "WHERE status = 'running' AND lease_expires_at > ?"
)
_RENEW = "UPDATE runs INDEXED BY runs_lease SET lease_expires_at = ? WHERE lease_owner = ?"
_RELEASE = (
    "UPDATE runs SET status = CASE WHEN status = 'running' THEN 'pending' ELSE status END, "
    "lease_owner = NULL, lease_expires_at = NULL, updated_at = ?, "
    f"updated_seq = {_CURRENT_SEQ} WHERE id = ? AND lease_owner = ?"
)
_RUN_STATUS = "SELECT status FROM runs WHERE id = ?"
_CANCEL = (
    "UPDATE runs SET cancel_requested = 1, updated_at = ?, "
    f"updated_seq = {_CURRENT_SEQ}, "
    "wake_at = CASE WHEN status = 'suspended' THEN ? ELSE wake_at END WHERE id = ?"
)
_FINISHED_BEFORE = (
    f"SELECT r.id, r.run_no FROM runs AS r {_LAST_EVENT_JOIN} "
    f"WHERE r.status IN ({_FINISHED_SQL}) AND {_UPDATED_AT} < ? "
    "AND (r.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs AS p "
    f"WHERE p.id = r.parent_id AND p.status NOT IN ({_FINISHED_SQL})))"
)
_DELETE_EVENTS = f"DELETE FROM events WHERE key >= ?1 << {_BITS} AND key < (?1 + 1) << {_BITS}"
_DELETE_RUN = "DELETE FROM runs WHERE id = ?"
_HOOK_COLUMNS = "token, run_id, op_id, created_at, timeout_at, schema"
_HOOK_OWNER = "SELECT run_id, op_id FROM hooks WHERE token = ?"
_INSERT_HOOK = f"INSERT INTO hooks ({_HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
# The live hook with a token, and what resume_hook needs of its run: status and newest seq.
_RESUME_TARGET = (
    "SELECT h.token, h.run_id, h.op_id, h.created_at, h.timeout_at, h.schema, r.status, "
    f"r.run_no, {_newest_key('r')} - (r.run_no << {_BITS}) "
    "FROM hooks AS h JOIN runs AS r ON r.id = h.run_id WHERE h.token = ?"
)
_WAKE_NOW = "UPDATE runs SET wake_at = ?1, updated_at = ?1, updated_seq = ?2 WHERE id = ?3"
_DELETE_HOOK = "DELETE FROM hooks WHERE token = ? AND run_id = ?"
_DROP_HOOKS = "DELETE FROM hooks WHERE run_id = ?"
_GET_HOOK = f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE token = ?"
_LIST_HOOKS = {
    False: f"SELECT {_HOOK_COLUMNS} FROM hooks ORDER BY created_at, token",
    True: f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE run_id = ? ORDER BY created_at, token",
}
# Streams (see _schema): a stream's chunks are keys stream_no << _CHUNK_BITS + index.
_CHUNK_BITS = _schema.CHUNK_BITS
_LEASE_HELD = "SELECT 1 FROM runs WHERE id = ? AND lease_owner = ?"
_STREAM = "SELECT stream_no, length, closed_by FROM streams WHERE run_id = ? AND name = ?"
_NEW_STREAM = "INSERT INTO streams (run_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)"
_WRITER_MARK = "SELECT written FROM stream_writers WHERE stream_no = ? AND writer = ?"
_SET_WRITER_MARK = (
    "INSERT INTO stream_writers (stream_no, writer, written) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (stream_no, writer) DO UPDATE SET written = excluded.written"
)
_INSERT_CHUNK = "INSERT INTO stream_chunks (key, writer, data, created_at) VALUES (?, ?, ?, ?)"
_UPDATE_STREAM = (
    "UPDATE streams SET length = ?, updated_at = ?, closed_by = COALESCE(closed_by, ?) "
    "WHERE stream_no = ?"
)
# The stream (if any) and whether its run has finished or does not exist, in one snapshot.
_STREAM_STATE = (
    "SELECT s.stream_no, s.length, s.closed_by IS NOT NULL, "
    f"COALESCE((SELECT status IN ({_FINISHED_SQL}) FROM runs WHERE id = ?1), 1) "
    "FROM (SELECT 1) LEFT JOIN streams AS s ON s.run_id = ?1 AND s.name = ?2"
)
_READ_CHUNKS = "SELECT data FROM stream_chunks WHERE key >= ? AND key < ? ORDER BY key"
_LIST_STREAMS = (
    "SELECT s.run_id, s.name, s.length, "
    f"s.closed_by IS NOT NULL OR COALESCE(r.status IN ({_FINISHED_SQL}), 1), "
    "s.created_at, s.updated_at "
    "FROM streams AS s LEFT JOIN runs AS r ON r.id = s.run_id WHERE s.run_id = ? "
    "ORDER BY s.stream_no"
)
_RUN_STREAMS = "SELECT stream_no FROM streams WHERE run_id = ?"
_DELETE_CHUNKS = (
    f"DELETE FROM stream_chunks WHERE key >= ?1 << {_CHUNK_BITS} "
    f"AND key < (?1 + 1) << {_CHUNK_BITS}"
)
_DELETE_WRITERS = "DELETE FROM stream_writers WHERE stream_no = ?"
_DELETE_STREAMS = "DELETE FROM streams WHERE run_id = ?"
_IDENTITY = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), "
    "EXISTS (SELECT 1 FROM sqlite_master)"
)


def _names_filter(filtered: bool) -> str:
    return " AND r.workflow_name IN (SELECT value FROM json_each(:names))" if filtered else ""


def _claim_sql(filtered: bool) -> tuple[str, ...]:
    """Up to ``:limit`` runnable runs of each kind, as ``(id, due, created, pos)`` rows.

    Due order is ``(due, created, pos)``: ``(wake_at or updated_at, created_at, insertion
    order)`` (mirrors ``MemoryWorld``). Each kind of runnable run is its own branch so that each
    can walk an index in due order and stop after ``:limit`` rows; the caller merges the branches
    (:func:`first_due`). Each branch is a statement of its own: as one ``UNION ALL`` (with or
    without an outer ``ORDER BY ... LIMIT``) SQLite 3.40 took 250-370 us with 3,000 runs due,
    against 50-80 us for the six statements.
    """
    names = _names_filter(filtered)
    by_wake = "r.wake_at"
    by_update = f"COALESCE(NULLIF(r.wake_at, 0), {_UPDATED_AT})"
    branches = [
        # Pending runs with a due time: created pending, or released.
        (
            by_wake,
            "",
            "r.status = 'pending' AND r.lease_owner IS NULL AND r.wake_at IS NOT NULL"
            " AND r.wake_at <> 0",
        ),
        # Suspended runs whose wake-up time has come.
        (by_wake, "", "r.status = 'suspended' AND r.wake_at <= :now AND r.wake_at <> 0"),
        # Rare cases ordered by their last change: pending without a due time (released after
        # being created leased) and a wake-up time of exactly 0 (``0.0 or updated_at``).
        (
            by_update,
            _LAST_EVENT_JOIN,
            "r.status = 'pending' AND r.lease_owner IS NULL AND r.wake_at IS NULL",
        ),
        (
            by_update,
            _LAST_EVENT_JOIN,
            "r.status = 'pending' AND r.lease_owner IS NULL AND r.wake_at = 0",
        ),
        (
            by_update,
            _LAST_EVENT_JOIN,
            # (0 is always in the past; a "wake_at <= :now" term here would make SQLite walk
            # every due suspended run instead of the few with 0.)
            "r.status = 'suspended' AND r.wake_at = 0",
        ),
        # Running runs whose lease lapsed or whose owner died (a few per worker at most).
        (
            by_update,
            _LAST_EVENT_JOIN,
            "r.status = 'running' AND (COALESCE(r.lease_expires_at, 0) <= :now"
            " OR r.lease_owner IN (SELECT value FROM json_each(:dead)))",
        ),
    ]
    return tuple(
        f"SELECT r.id, {key} AS due, r.created_at AS created, r.run_no AS pos "
        f"FROM runs AS r {join} WHERE {where}{names} ORDER BY due, created, pos LIMIT :limit"
        for key, join, where in branches
    )


def first_due(rows: list[tuple[str, float, float, int]], limit: int) -> list[str]:
    """The ids of the first ``limit`` rows of a claim query, in due order."""
    rows.sort(key=lambda row: (row[1], row[2], row[3]))
    return [row[0] for row in rows[:limit]]


def _next_due_sql(filtered: bool) -> str:
    names = _names_filter(filtered)
    return (
        "SELECT MIN(t) FROM ("
        "SELECT * FROM (SELECT r.wake_at AS t FROM runs AS r WHERE r.status = 'suspended' "
        f"AND r.wake_at IS NOT NULL{names} ORDER BY r.wake_at LIMIT 1) UNION ALL "
        "SELECT * FROM (SELECT r.lease_expires_at FROM runs AS r WHERE r.status = 'running' "
        f"AND r.lease_expires_at IS NOT NULL{names} ORDER BY r.lease_expires_at LIMIT 1))"
    )


_CLAIM = {filtered: _claim_sql(filtered) for filtered in (False, True)}
_NEXT_DUE = {filtered: _next_due_sql(filtered) for filtered in (False, True)}
