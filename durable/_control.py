"""Engine control flow. These derive from ``BaseException`` so user code cannot swallow them."""

from __future__ import annotations


class Suspend(BaseException):
    """Unwinds a workflow that must wait (a long sleep, a retry delay, a hook).

    The run records where it stopped; a worker replays it from the log when it is due.
    """

    def __init__(self, reason: str = "suspended") -> None:
        super().__init__(
            f"durable: the run is {reason}; this is engine control flow, do not catch it"
        )


class Cancelled(BaseException):
    """Unwinds a workflow whose run was cancelled."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"durable: run {run_id} was cancelled; do not catch this")


class StorageUnavailable(BaseException):
    """Unwinds a workflow whose durable write failed for a reason other than a lost lease.

    The run is neither failed nor completed: its lease is given back and it is retried later,
    so a briefly locked or unreachable world never turns into a failed run.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
