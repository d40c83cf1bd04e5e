"""Group commit: appends to different runs that arrive together share one transaction.

A worker executes many runs at once, and each of their steps ends in an append. Only one
transaction can write at a time, so while one commits the others queue; the next thread to take
the write lock commits everything queued by then in one transaction. A commit costs about the
same whatever it holds, so a worker with many runs in flight makes fewer commits than appends,
and its claims of due runs wait behind fewer of them.

Each queued append has a wake-up of its own: a finished commit wakes exactly the threads whose
appends it wrote and hands the lead to the oldest one still waiting. (One condition shared by
every waiter would wake them all at each commit, only for most to find nothing for them and wait
again: with dozens of threads queued, that churn cost more CPU than the commits.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from durable.world import NewEvent, RunUpdate


def _new_wakeup() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(slots=True, eq=False)
class PendingAppend:
    """One ``append`` waiting for the transaction that will write it, and how it went."""

    run_id: str
    owner: str
    events: Sequence[NewEvent]
    update: RunUpdate | None
    done: bool = False
    cancel_requested: bool = False
    error: BaseException | None = None
    leads: bool = False
    # Held until the append is written or handed the lead; its thread waits to acquire it.
    wakeup: threading.Lock = field(default_factory=_new_wakeup, repr=False)


class AppendQueue:
    """Appends waiting for the write lock; one thread at a time leads a commit of them all."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: list[PendingAppend] = []
        self._leading = False

    def join(self, append: PendingAppend) -> bool:
        """Queue ``append`` and wait; True if the caller must now lead a commit.

        False means another thread's commit has already written (or failed) ``append``.
        """
        with self._mutex:
            self._waiting.append(append)
            if not self._leading:
                self._leading = append.leads = True
                return True
        try:
            append.wakeup.acquire()
        except BaseException:  # interrupted: leave the queue, and pass on a lead just handed over
            with self._mutex:
                if any(queued is append for queued in self._waiting):
                    self._waiting.remove(append)
                    if append.leads:
                        self._hand_over()
            raise
        return append.leads and not append.done

    def take(self) -> list[PendingAppend]:
        """Everything queued so far (the leader's own append among it), for one commit."""
        with self._mutex:
            batch, self._waiting = self._waiting, []
            return batch

    def finish(self, batch: Sequence[PendingAppend]) -> None:
        """Mark ``batch`` done, wake its threads, and hand the lead to the next one waiting."""
        with self._mutex:
            for append in batch:
                append.done = True
            self._hand_over()
        for append in batch:
            if not append.leads:
                append.wakeup.release()

    def withdraw(self, append: PendingAppend) -> None:
        """The leader gives up before taking the batch: ``append`` leaves the queue unwritten."""
        with self._mutex:
            self._waiting.remove(append)
            self._hand_over()

    def _hand_over(self) -> None:
        # Called with the mutex held, by the leader as it stops leading.
        if self._waiting:
            following = self._waiting[0]
            following.leads = True
            following.wakeup.release()
        else:
            self._leading = False
