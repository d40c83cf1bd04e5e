"""Copying the write-ahead log back into the database on a thread of its own.

A commit that finds the log at its size limit copies it back before it returns (SQLite's
automatic checkpoint): 8,192 frames take about 25 ms, during which every write of the process
waits. A :class:`Checkpointer` does most of that copying beside the writes instead, on its own
connection: a ``PASSIVE`` checkpoint neither takes the write lock nor waits for readers, and
SQLite releases the GIL while it copies. The writing connection keeps its automatic checkpoint
as a backstop; it then only copies what was written since the last background pass, and restarts
the log.

Only SQLite touches the database's files here: a descriptor of them opened and closed from
Python would release every POSIX lock the process holds on them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("durable.sqlite")

BACKGROUND_CHECKPOINT_ROWS = 1024
"""Rows a world's writing connection changes between requests for a background checkpoint
(about as many log frames on the common path, where a commit adds a row or a few to one page)."""
_ATTEMPTS = 3
_RETRY_DELAY = 0.05


_shared: dict[Path, Checkpointer] = {}
_shared_lock = threading.Lock()


def shared_checkpointer(path: Path, synchronous: str) -> Checkpointer:
    """The checkpointer of a database file in this process, one for all its worlds.

    Call :meth:`Checkpointer.release` when the world closes.
    """
    with _shared_lock:
        found = _shared.get(path)
        if found is None:
            found = _shared[path] = Checkpointer(path, synchronous)
        found.users += 1
        return found


def _forget_shared_after_fork() -> None:
    # The parent's threads do not exist in the child; each world abandons its checkpointer's
    # connection (see Connections) and shares a new one.
    global _shared_lock
    _shared_lock = threading.Lock()
    _shared.clear()


os.register_at_fork(after_in_child=_forget_shared_after_fork)


class Checkpointer:
    """A daemon thread that checkpoints a database's log when asked to."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._wanted = threading.Event()
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.users = 0
        """Worlds of this process sharing it."""
        self.passes = 0
        """Checkpoints completed (for tests and diagnostics)."""

    def request(self) -> None:
        """Ask for a checkpoint soon; returns at once. Called with a world's write lock held."""
        if self._closed:
            return
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=f"durable-checkpoint:{self._path.name}", daemon=True
                    )
                    self._thread.start()
        self._wanted.set()

    def release(self) -> None:
        """A world sharing it closed; the last one to close stops it."""
        with _shared_lock:
            self.users -= 1
            if self.users > 0:
                return
            if _shared.get(self._path) is self:
                del _shared[self._path]
        self.close()

    def close(self) -> None:
        """Stop the thread and close its connection, after any checkpoint under way."""
        self._closed = True
        self._wanted.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    def abandon(self) -> sqlite3.Connection | None:
        """In a forked child: the parent's connection, which the child must never use or close."""
        self._closed = True
        return self._conn

    def _checkpoint(self) -> bool:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
                # Checkpoints sync the files as the world's commits do.
                self._conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.debug("background checkpoint of %s failed: %s", self._path, exc)
            return False
        return not busy

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed or os.getpid() != pid:
                break
            for attempt in range(_ATTEMPTS):
                if self._checkpoint():
                    self.passes += 1
                    break
                # Best effort: the writing connection's own checkpoint still copies the log.
                time.sleep(_RETRY_DELAY * (attempt + 1))
        if self._conn is not None and os.getpid() == pid:
            self._conn.close()
            self._conn = None
