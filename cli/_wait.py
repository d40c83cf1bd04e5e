"""``durable start --wait``: execute the run it started, and only that run, until it finishes.

No worker runs in this process: other runs waiting in the world are left to workers. Whenever the
run (or a child run it started) is runnable (new, due after a sleep or a retry delay, woken by a
hook or a cancellation, or its lease lapsed), this process leases it with ``World.acquire`` and
executes it; while it is suspended, this process waits. A standalone worker may take the run at
any of those moments instead; the lease makes that safe, and this process then only watches.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from typing import Literal

import click

from cli._stopping import describe_runs
from cli._values import format_local
from durable._children import CHILD_TOKEN_PREFIX, child_ids
from durable._errors import DurableError, RunNotFound
from durable._runtime import Outcome, Runtime
from durable.world import FINISHED_STATUSES, RunRecord, is_runnable

__all__ = ["Ending", "RunDriver"]

log = logging.getLogger("durable")

Ending = Literal["finished", "timeout", "interrupted"]

_FIRST_POLL = 0.005
_MAX_POLL = 1.0
"""Longest pause between looks at a waiting run: a hook resumed meanwhile makes it due."""
_NOTICE_AFTER = 3.0
"""Seconds a run stays suspended before this process says what it waits for."""
_RETRY_AFTER = 1.0
"""Seconds before executing a run again after the engine failed on it (a worker's poll)."""


class RunDriver:
    """Executes one run, and the child runs it starts, in this process until it finishes.

    Args:
        runtime: a runtime without an embedded worker (``configure(worker=False)``).
        run_id: the run to execute.
        worker_hint: the command that runs a worker for it, for messages.
    """

    def __init__(self, runtime: Runtime, run_id: str, worker_hint: str) -> None:
        self.runtime = runtime
        self.world = runtime.world
        self.run_id = run_id
        self.worker_hint = worker_hint
        # The runs driven here (the run and its unfinished children), each with the length of
        # its log already read for children it started.
        self._read: dict[str, int] = {run_id: 0}
        self._executing: dict[str, str] = {}  # run id -> workflow name
        self._lock = threading.Lock()
        self._left: set[str] = set()  # children of workflows not imported here: for workers
        self._not_before: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._renewed = time.monotonic()
        self._suspended_since: float | None = None
        self._told: object = None

    def interrupt(self) -> None:
        """Make :meth:`drive` return ``"interrupted"`` (safe to call from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def executing(self) -> dict[str, str]:
        """The runs executing here now, by id, with their workflow's name."""
        with self._lock:
            return dict(self._executing)

    def drive(self, timeout: float | None) -> Ending:
        """Execute the run whenever it is due until it finishes.

        Returns:
            ``"finished"``; ``"timeout"`` once ``timeout`` seconds have passed; ``"interrupted"``
            after :meth:`interrupt`. Executions still in flight then go on: see :meth:`finish`.

        Raises:
            WorldError: the world failed in a way that retrying cannot fix.
            RunNotFound: the run was deleted meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_POLL
        while True:
            if self.runtime.fatal_error is not None:
                raise self.runtime.fatal_error
            root = self._get(self.run_id)
            if root.status in FINISHED_STATUSES:
                return "finished"
            if self._stop.is_set():
                return "interrupted"
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return "timeout"
            started = self._execute_due(root)
            self._renew()
            self._tell(root)
            wait = _FIRST_POLL if started else delay
            woken = self._wake.wait(wait if left is None else min(wait, left))
            self._wake.clear()
            delay = _FIRST_POLL if started or woken else min(delay * 2, _MAX_POLL)

    def finish(self, why: str | None) -> None:
        """Hand back the runs executing here at their next durable point, and wait for that.

        A step in flight finishes and is recorded first, so a worker does not run it again.
        ``why`` (``"interrupted"``) is said first if anything has to be waited for.
        """
        executing = self.executing()
        if not executing:
            return
        if why is not None:
            click.echo(
                f"{why}: waiting for {describe_runs(executing)} to reach a durable point "
                "(Ctrl-C again to stop at once; a worker then runs the step in flight again)",
                err=True,
            )
        for run_id in executing:
            self.runtime.hand_back(run_id)
        while self.executing():
            self._renew()
            self._wake.wait(_MAX_POLL)
            self._wake.clear()

    def waiting_line(self, record: RunRecord) -> str:
        """What a suspended run waits for: ``suspended until …``, ``waiting on hook …``."""
        hooks = self.world.list_hooks(record.id)
        outside = [h for h in hooks if not h.token.startswith(CHILD_TOKEN_PREFIX)]
        children = [
            h.token[len(CHILD_TOKEN_PREFIX) :]
            for h in hooks
            if h.token.startswith(CHILD_TOKEN_PREFIX)
        ]
        if outside:
            tokens = ", ".join(repr(h.token) for h in outside)
            ends = [h.timeout_at for h in outside if h.timeout_at is not None]
            until = f", until {format_local(min(ends))} at most" if ends else ""
            first = shlex.quote(outside[0].token)
            return f"waiting on hook {tokens}{until} (`durable resume {first} PAYLOAD` resumes it)"
        if children:
            return f"waiting for its child run {', '.join(children)}"
        if record.wake_at is not None:
            return f"suspended until {format_local(record.wake_at)}"
        return "suspended"

    # -- one look at the world ---------------------------------------------------------------

    def _get(self, run_id: str) -> RunRecord:
        record = self.world.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    def _execute_due(self, root: RunRecord) -> bool:
        """Lease and start executing the driven runs that are runnable; whether any started."""
        now = self.world.now()
        started = False
        for run_id in list(self._read):
            record = root if run_id == self.run_id else self.world.get_run(run_id)
            if record is None:
                del self._read[run_id]
                continue
            self._adopt_children(record)
            if record.status in FINISHED_STATUSES:
                if run_id != self.run_id:
                    del self._read[run_id]
                continue
            with self._lock:
                busy = run_id in self._executing
                full = len(self._executing) >= self.runtime.options.max_concurrent_runs
            if busy or full or run_id in self._left or not self._runnable(record, now):
                continue
            if self._not_before.get(run_id, 0.0) > time.monotonic():
                continue
            leased = self.world.acquire(run_id, self.runtime.owner, self.runtime.options.lease_ttl)
            if leased is not None:
                self._start(leased)
                started = True
        return started

    def _adopt_children(self, record: RunRecord) -> None:
        # Children are part of the run: without a worker nothing else would execute them.
        read = self._read.get(record.id, 0)
        if record.last_seq <= read:
            return
        events = self.world.read_events(record.id, read)
        for child in child_ids(events):
            self._read.setdefault(child, 0)
        self._read[record.id] = max([read, *(e.seq for e in events)])

    def _runnable(self, record: RunRecord, now: float) -> bool:
        # As World.acquire judges it, so that a waiting run costs a read per look, not a write.
        return record.lease_owner != self.runtime.owner and is_runnable(
            record.status, record.wake_at, record.lease_owner, record.lease_expires_at, now
        )

    def _start(self, record: RunRecord) -> None:
        with self._lock:
            self._executing[record.id] = record.workflow_name
        # A daemon thread: a second Ctrl-C ends the process without waiting for the step.
        thread = threading.Thread(
            target=self._execute, args=(record,), name=f"durable-run {record.id}", daemon=True
        )
        thread.start()

    def _execute(self, record: RunRecord) -> None:
        outcome = Outcome("error")
        try:
            outcome = self.runtime.execute_now(record)
        except Exception:
            log.exception("run %s: executing it failed; it will be retried", record.id)
        finally:
            if outcome.status == "error":
                self._not_before[record.id] = time.monotonic() + _RETRY_AFTER
            elif outcome.status == "pending":  # its workflow is not imported here
                self._left.add(record.id)
            with self._lock:
                self._executing.pop(record.id, None)
            self._wake.set()

    def _renew(self) -> None:
        ttl = self.runtime.options.lease_ttl
        if not self.executing() or time.monotonic() - self._renewed < ttl / 3:
            return
        self._renewed = time.monotonic()
        try:
            self.world.renew_leases(self.runtime.owner, ttl)
        except DurableError as exc:  # the next look tries again
            log.warning("renewing leases: %s", exc)

    def _tell(self, root: RunRecord) -> None:
        # Once a run has been suspended a few seconds, say so: a silent command that waits days
        # for a sleep or a hook looks hung.
        if root.status != "suspended" or self.executing():
            self._suspended_since = None
            return
        now = time.monotonic()
        if self._suspended_since is None:
            self._suspended_since = now
        if now - self._suspended_since < _NOTICE_AFTER:
            return
        if root.wake_at is not None and root.wake_at - self.world.now() < 1.0:
            return  # about to wake up
        try:
            what = self.waiting_line(root)
        except DurableError:
            what = "suspended"
        # Said once per wait: a run that re-checks its hook or child and suspends on it again is
        # not news (another sleep is).
        told = what if what.startswith("waiting") else (root.last_seq, root.wake_at)
        if self._told == told:
            return
        self._told = told
        click.echo(
            f"run {root.id} is {what}; waiting here to continue it (Ctrl-C leaves it to a "
            f"worker: {self.worker_hint})",
            err=True,
        )
