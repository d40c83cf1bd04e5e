"""The SQLite world's connections.

Opening (and migrating) the file, the writing connection under its lock, a pool of read
connections beside it, transactions, and fork safety.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, unquote

from durable._errors import ConfigurationError, WorldError
from worlds.sqlite import _schema
from worlds.sqlite._checkpointer import BACKGROUND_CHECKPOINT_ROWS, shared_checkpointer
from worlds.sqlite._errors import _is_busy, translate_error
from worlds.sqlite._group import AppendQueue
from worlds.sqlite._sql import _IDENTITY

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
_READER_CACHE_KIB = 256
"""Page cache of each read connection."""
_open_worlds: weakref.WeakSet[Connections] = weakref.WeakSet()
def _forget_connections_after_fork() -> None:
    for world in list(_open_worlds):
        world._forget_connection()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


class Connections:
    """The connections of a :class:`~worlds.sqlite.SqliteWorld` (see its docstring for the URL)."""

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
        self._changes_at = 0
        self._conn: sqlite3.Connection | None = self._open()
        self._checkpointer = shared_checkpointer(path, synchronous)  # once the file is ours
        _open_worlds.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; the world may not be used afterwards. Closing twice is fine."""
        with self._lock:
            if not self._closed and self._pid == os.getpid():
                self._checkpointer.release()
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

    # -- connection management -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorldError(
                f"cannot create the directory {self.path.parent} for the durable database: "
                f"{exc.strerror or exc}; check the path in DURABLE_WORLD and its permissions"
            ) from exc
        _refuse_copy_without_log(self.path)
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
        changes = conn.total_changes
        if changes - self._changes_at >= BACKGROUND_CHECKPOINT_ROWS:
            self._changes_at = changes
            self._checkpointer.request()
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
        self._changes_at = 0
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
        parents = self._checkpointer.abandon()
        if parents is not None:
            _abandoned.append(parents)
        self._checkpointer = shared_checkpointer(self.path, self.synchronous)
        self._changes_at = 0
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


def _refuse_copy_without_log(path: Path) -> None:
    """Refuse a file whose data can only be in a write-ahead log that is not beside it.

    Until a checkpoint copies them back, a durable database's newest writes (at first, its
    schema and every run) live in ``<file>-wal``. A copy of the main file alone then looks like
    an empty database in WAL mode: opened, it would become a new, empty world without a word.
    """
    # A process creating the file passes through this state for a moment (WAL mode set, its
    # log not open yet): only a state that lasts is a copy.
    deadline = time.monotonic() + 1.0
    while _looks_like_copy_without_log(path):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    else:
        return
    raise WorldError(
        f"the durable database {path} is in write-ahead-log mode but holds no schema and has no "
        f"{path.name}-wal beside it: it looks like a copy made without its -wal file, where the "
        "runs are. Copy the three files together while no process writes "
        f"({path.name}, {path.name}-wal, {path.name}-shm), or make a consistent copy with "
        f"`sqlite3 {path.name} \".backup copy.db\"`. If this file is new and empty, delete it"
    )


def _looks_like_copy_without_log(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            header = file.read(100)
    except OSError:
        return False  # no file yet (or unreadable: connecting reports that)
    if len(header) < 100 or header[18] != 2 or header[19] != 2:
        return False  # empty, or not in WAL mode
    user_version = int.from_bytes(header[60:64], "big")
    return user_version == 0 and not Path(f"{path}-wal").exists()


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
