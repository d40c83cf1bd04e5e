"""Translating sqlite3 errors into :class:`~durable.WorldError` messages that say what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from durable._errors import WorldError
from worlds.sqlite._sql import (
    _SQLITE_BUSY,
    _SQLITE_CANTOPEN,
    _SQLITE_CORRUPT,
    _SQLITE_FULL,
    _SQLITE_IOERR,
    _SQLITE_LOCKED,
    _SQLITE_NOTADB,
    _SQLITE_PERM,
    _SQLITE_READONLY,
)


def translate_error(exc: sqlite3.Error, path: Path, doing: str, busy_timeout: float) -> WorldError:
    """Turn a ``sqlite3`` exception into a :class:`~durable.WorldError` that says what to do.

    Args:
        exc: The exception raised by ``sqlite3``.
        path: The database file.
        doing: What the world was doing, e.g. ``"appending to run wrun_1"``.
        busy_timeout: The configured busy timeout in seconds, quoted for a locked database.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if _is_busy(exc):
        return WorldError(
            f"the durable database {path} is locked: another process holds a write lock on it "
            f"and kept it longer than the busy timeout ({busy_timeout:g} s) while {doing}. "
            "Nothing was written by this call. If that process is stuck, stop it; otherwise "
            "wait longer by adding ?busy_timeout=SECONDS to the world URL "
            f"(e.g. sqlite:///{path}?busy_timeout=120).",
            transient=True,
        )
    if (
        primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
        or "not a database" in text
        or "malformed" in text
    ):
        return WorldError(
            f"the file {path} is not a valid durable database or is corrupt ({text}; while "
            f"{doing}). durable leaves the file as it is. Restore it from a backup, or point "
            "DURABLE_WORLD at another file (e.g. DURABLE_WORLD=sqlite:///.durable/new.db); "
            "keep the damaged file until you no longer need the runs it holds."
        )
    if primary == _SQLITE_CANTOPEN:
        return WorldError(
            f"cannot open the durable database {path} ({text}): check that the path is right "
            "and that its directory is writable by this process"
        )
    if primary in (_SQLITE_READONLY, _SQLITE_PERM):
        return WorldError(
            f"the durable database {path} is read-only ({text}; while {doing}): give this "
            "process write permission on the file and its directory (SQLite writes -wal and "
            "-shm files next to it)"
        )
    if primary == _SQLITE_FULL:
        return WorldError(
            f"the disk holding the durable database {path} is full ({text}; while {doing}): "
            "free some space (deleting old finished runs also helps)",
            transient=True,
        )
    if primary == _SQLITE_IOERR:
        return WorldError(
            f"I/O error on the durable database {path} ({text}; while {doing}): check the disk "
            "and the filesystem; network filesystems are not supported",
            transient=True,
        )
    return WorldError(f"the durable database {path} failed while {doing}: {text}")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc)
