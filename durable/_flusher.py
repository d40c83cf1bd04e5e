"""Writes step results that are still waiting for their run's next durable write.

A step's result need not be committed on its own the moment the step returns: the workflow code
that runs next has no outside effect, so the result may ride along with the run's next write
(the next step's start, a sleep, the run's outcome), which saves a commit per step boundary
that has one. What must not happen is a finished step running again because the workflow's own
code took long before its next durable operation and the process died meanwhile. This thread
bounds that wait: a result deferred for more than :data:`MAX_DEFER` is written by it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

from durable._engine import RunContext

MAX_DEFER = 0.01
"""Seconds a step's result may wait for its run's next write before this thread writes it. A
result is durable at most about twice this long after its step returned (the thread looks once
per period)."""


class Flusher:
    """A daemon thread that, while runs execute, writes their step results deferred too long."""

    def __init__(self, contexts: Callable[[], Iterable[RunContext]]) -> None:
        self._contexts = contexts
        self._afresh()

    def _afresh(self) -> None:
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def runs_started(self) -> None:
        """A run began executing here: look at it from now on (cheap when already looking)."""
        if self._pid != os.getpid():  # a forked child: the parent's thread does not exist here
            self._afresh()
        if self._busy.is_set():
            return
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="durable-flusher", daemon=True
                )
                self._thread.start()
            self._busy.set()

    def stop(self) -> None:
        """Write what is still deferred and end the thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._busy.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self._flush(float("inf"))

    def _loop(self) -> None:
        while not self._stopped:
            self._busy.wait()
            if self._stopped:
                return
            time.sleep(MAX_DEFER)
            if not self._flush(time.monotonic() - MAX_DEFER):
                # Nothing executes here: sleep until a run starts (it sets _busy again).
                self._busy.clear()
                if self._flush(time.monotonic() - MAX_DEFER):  # one started meanwhile
                    self._busy.set()

    def _flush(self, deferred_before: float) -> bool:
        """Write results deferred before a time; whether any run is executing here."""
        contexts = list(self._contexts())
        for ctx in contexts:
            ctx.flush_deferred(deferred_before)  # a failed write waits for the run's next one
        return bool(contexts)
