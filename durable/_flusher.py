"""Commits step completions that a workflow has not committed itself within a few milliseconds.

In a sync workflow's main branch a step's completion waits to share the workflow's next durable
write (usually microseconds later: the next step, or the run's outcome, so a run's last step and
its outcome are one transaction). Should the workflow instead run code of its own for longer,
the flusher commits the completion, so a crash then can no longer run the finished step again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durable._engine import RunContext

FLUSH_DELAY = 0.005
"""Seconds a step completion may wait for the workflow's next durable write (up to twice this,
as the flusher wakes once per delay)."""


class Flusher:
    """A daemon thread (started on first use, in each process) that sleeps while nothing waits."""

    def __init__(self, delay: float = FLUSH_DELAY) -> None:
        self._delay = delay
        self._pending: deque[tuple[float, RunContext]] = deque()
        self._changed = threading.Condition(threading.Lock())
        self._idle = False
        self._pid: int | None = None

    def defer(self, ctx: RunContext) -> None:
        """Have ``ctx``'s deferred completions committed within the delay, if still pending."""
        with self._changed:
            self._pending.append((time.monotonic() + self._delay, ctx))
            if self._pid != os.getpid():  # first use, or a forked child: the thread is not here
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="durable-flusher", daemon=True).start()
            elif self._idle:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending:
                    self._idle = True
                    self._changed.wait()
                self._idle = False
                # Ticks of one delay, not a wake-up per entry: a busy worker defers thousands
                # of completions a second, nearly all committed by their workflows meanwhile.
                self._changed.wait(self._delay)
                now = time.monotonic()
                due: list[RunContext] = []
                while self._pending and self._pending[0][0] <= now:
                    due.append(self._pending.popleft()[1])
            for ctx in due:
                ctx.flush_deferred()


FLUSHER = Flusher()
"""The process's flusher."""
