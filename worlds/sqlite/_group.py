"""Group commit: appends to different runs that arrive together share one transaction.

A worker executes many runs at once, and each of their steps ends in an append. Only one
transaction can write at a time, so while one commits the others queue; the next thread to take
the write lock commits everything queued by then in one transaction. A commit costs about the
same whatever it holds, so a worker with many runs in flight makes fewer commits than appends,
and its claims of due runs wait behind fewer of them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from durable.world import NewEvent, RunUpdate


@dataclass(slots=True)
class PendingAppend:
    """One ``append`` waiting for the transaction that will write it, and how it went."""

    run_id: str
    owner: str
    events: Sequence[NewEvent]
    update: RunUpdate | None
    done: bool = False
    cancel_requested: bool = False
    error: BaseException | None = None


class AppendQueue:
    """Appends waiting for the write lock; one thread at a time leads a commit of them all."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._waiting: list[PendingAppend] = []
        self._leading = False

    def join(self, append: PendingAppend) -> bool:
        """Queue ``append`` and wait; True if the caller must now lead a commit.

        False means another thread's commit has already written (or failed) ``append``.
        """
        with self._changed:
            self._waiting.append(append)
            while self._leading and not append.done:
                self._changed.wait()
            if append.done:
                return False
            self._leading = True
            return True

    def take(self) -> list[PendingAppend]:
        """Everything queued so far (the leader's own append among it), for one commit."""
        with self._changed:
            batch, self._waiting = self._waiting, []
            return batch

    def finish(self, batch: Sequence[PendingAppend]) -> None:
        """Mark ``batch`` done and let the next leader go."""
        with self._changed:
            for append in batch:
                append.done = True
            self._leading = False
            self._changed.notify_all()

    def withdraw(self, append: PendingAppend) -> None:
        """The leader gives up before taking the batch: ``append`` leaves the queue unwritten."""
        with self._changed:
            self._waiting.remove(append)
            self._leading = False
            self._changed.notify_all()
