"""Testing helpers: an isolated in-memory world with a clock you control.

Example::

    from durable.testing import world

    def test_signup():
        with world() as env:
            assert signup("ada@example.com") == "done"   # sleeps "7 days" in milliseconds
            assert env.now() - env.started_at >= 7 * 86400

The pytest plugin shipped with durable provides the same as the ``durable_world`` fixture.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from durable._client import current_runtime, use_runtime
from durable._decorators import Workflow, swap_code
from durable._durations import parse_duration
from durable._runtime import Runtime, RuntimeOptions, hooks_text
from durable.world import HookRecord
from worlds.memory import MemoryWorld

__all__ = ["Clock", "TestWorld", "deploy", "world"]

log = logging.getLogger("durable")

P = ParamSpec("P")
R = TypeVar("R")


class Clock:
    """A clock that only moves when told to (or when the runtime skips idle time)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current time in epoch seconds."""
        with self._lock:
            return self._now

    def advance(self, duration: float | str | timedelta) -> None:
        """Move the clock forward by seconds, a timedelta or a string like ``"7 days"``."""
        seconds = parse_duration(duration)
        with self._lock:
            self._now += seconds

    def advance_to(self, when: float) -> None:
        """Move the clock forward to ``when`` (never backwards)."""
        with self._lock:
            self._now = max(self._now, when)


@dataclass
class TestWorld:
    """What :func:`world` yields."""

    __test__ = False  # not a pytest test class

    world: MemoryWorld
    clock: Clock
    installed: Runtime = field(repr=False)
    started_at: float = field(default=0.0)

    @property
    def runtime(self) -> Runtime:
        """The runtime on this world: the one installed, or one ``durable.configure`` made since."""
        current = current_runtime()
        return current if current is not None and current.world is self.world else self.installed

    def now(self) -> float:
        """The controlled clock's time in epoch seconds."""
        return self.clock()

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every run has finished or waits (a sleep, a hook, a retry's delay).

        That is: no run executes in this process, and none is due at the clock's time. Returns
        False if ``timeout`` (real seconds) passed first, say while a step waits on the test.
        """
        runtime = self.runtime
        deadline = time.monotonic() + timeout
        while True:
            runtime.poll_once()  # claims runs due now (woken by the clock, or resumed hooks)
            if runtime.idle():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            runtime.wait_for_progress(min(left, 0.01))

    def wait_for_hook(self, token: str, timeout: float = 10.0) -> HookRecord:
        """Wait until a run has created the hook ``token``, so the test can resume it.

        Runs go on meanwhile: what comes due (a retry's delay, a sleep before the hook) is
        reached by moving the clock, when the world skips time (the default), as a run waiting
        for its result would. ``wait_until_idle()`` returns while a step before the hook waits
        out a retry delay; this does not.

        Raises:
            TimeoutError: no hook ``token`` after ``timeout`` real seconds, or every run waits
                and nothing is due (no run will create it).
        """
        deadline = time.monotonic() + timeout
        while True:
            hook = self.world.get_hook(token)
            if hook is not None:
                return hook
            left = deadline - time.monotonic()
            idle = self.wait_until_idle(max(left, 0.0))
            hook = self.world.get_hook(token)
            if hook is not None:
                return hook
            due = self.world.next_due_at() if idle else None
            skipping = self.runtime.options.time_skipping is not None
            live = self.world.list_hooks()
            expiring = [h for h in live if h.timeout_at is not None]
            first_timeout = min((h.timeout_at for h in expiring if h.timeout_at), default=None)
            if due is not None and first_timeout is not None and due >= first_timeout:
                # Only a hook's timeout is due next: jumping there would run the timeout path of
                # another run (a token with a typo would time out every hook the test waits on).
                raise TimeoutError(
                    f"no hook {token!r} was created: nothing is due before the timeout of "
                    f"{hooks_text(expiring)}; the clock was not moved (to go past that timeout, "
                    f"env.advance(...) first){_live_text(token, live)}"
                )
            if idle and due is not None and skipping and time.monotonic() < deadline:
                self.world.renew_leases(self.runtime.owner, self.runtime.options.lease_ttl)
                self.clock.advance_to(due)
                continue
            why = "no run is executing and nothing is due" if idle else f"{timeout} s passed"
            raise TimeoutError(
                f"no hook {token!r} was created: {why}{_live_text(token, live)}{_on_a_loop()}"
            )

    def advance(self, duration: float | str | timedelta, *, wait: float = 10.0) -> None:
        """Move time forward (seconds, a timedelta or ``"7 days"``) and run what comes due.

        First waits until the runs already going have finished or wait (so a run just started
        reaches its sleep before the clock jumps past it), then jumps, then waits until the
        runs the jump woke have finished or wait again: what the test asserts next has
        happened. Each wait gives up after ``wait`` real seconds (a step that waits on the
        test itself); runs still executing at the jump keep their leases, or the jump would
        make them look abandoned and the worker would start each again beside itself.
        """
        seconds = parse_duration(duration)
        if not self.wait_until_idle(wait):
            log.warning(
                "advance(): runs still executing after %.1f s (%s); moving the clock anyway",
                wait, ", ".join(self.runtime.executing_runs()[:5]),
            )
        runtime = self.runtime
        self.world.renew_leases(runtime.owner, runtime.options.lease_ttl + seconds)
        self.clock.advance(seconds)
        self.wait_until_idle(wait)

    # Async tests: a run awaited on the test's own event loop executes there, so a blocking
    # call on that loop would stall the very run it waits for. These wait in a thread instead.

    async def wait_until_idle_async(self, timeout: float = 10.0) -> bool:
        """:meth:`wait_until_idle` for async tests, leaving the event loop free meanwhile."""
        await asyncio.sleep(0)
        return await asyncio.to_thread(self.wait_until_idle, timeout)

    async def wait_for_hook_async(self, token: str, timeout: float = 10.0) -> HookRecord:
        """:meth:`wait_for_hook` for async tests, leaving the event loop free meanwhile."""
        await asyncio.sleep(0)  # a run the test just created a task for starts first
        return await asyncio.to_thread(self.wait_for_hook, token, timeout)

    async def advance_async(self, duration: float | str | timedelta, *, wait: float = 10.0) -> None:
        """:meth:`advance` for async tests, leaving the event loop free meanwhile."""
        await asyncio.sleep(0)
        await asyncio.to_thread(functools.partial(self.advance, duration, wait=wait))


@contextmanager
def world(
    *,
    time_skipping: bool = True,
    force_replay: bool | None = None,
    start: float | datetime | None = None,
) -> Iterator[TestWorld]:
    """An isolated in-memory world for tests, installed as this process's world.

    Args:
        time_skipping: while a test waits for a result and nothing is executing, jump the
            clock to the next due sleep or retry, so long sleeps take no real time.
        force_replay: suspend and replay at every durable point, to prove a workflow replays
            (default: on when the environment has ``DURABLE_FORCE_REPLAY=1``).
        start: the clock's time at first (a timezone-aware ``datetime`` or epoch seconds;
            default: now), for tests around month ends, leap days or daylight saving changes.
    """
    if force_replay is None:
        force_replay = os.environ.get("DURABLE_FORCE_REPLAY") == "1"
    clock = Clock(_epoch(start))
    memory = MemoryWorld("memory://test", clock=clock)
    options = RuntimeOptions(
        inline_wait_limit=0.0,  # the clock is not real: every wait goes through it
        poll_interval=0.01,
        force_replay=force_replay,
        time_skipping=clock.advance_to if time_skipping else None,
    )
    runtime = Runtime(memory, options)
    previous = use_runtime(runtime)
    try:
        yield TestWorld(memory, clock, runtime, started_at=clock())
    finally:
        last = use_runtime(previous)
        runtime.stop()
        if last is not None and last is not runtime and last is not previous:
            last.stop()  # made by durable.configure(...) on this world during the test


def _on_a_loop() -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return ""
    return (
        "; this call blocked a running event loop, where a run awaited in this test may be "
        "the one to create it: in async tests use await env.wait_for_hook_async(...)"
    )


def _live_text(token: str, live: list[HookRecord]) -> str:
    if not live:
        return ""
    return f"; the live hooks are {hooks_text(live)}: is {token!r} spelled as the run makes it?"


def _epoch(start: float | datetime | None) -> float | None:
    if not isinstance(start, datetime):
        return start
    if start.tzinfo is None:
        raise ValueError(
            f"start={start!r} has no timezone: give one, e.g. datetime(2024, 2, 29, "
            "tzinfo=timezone.utc), so the clock means the same instant everywhere"
        )
    return start.timestamp()


@contextmanager
def deploy(workflow: Workflow[P, R], code: Callable[P, R]) -> Iterator[None]:
    """Run ``workflow``'s runs with ``code`` meanwhile, as a deployment of changed code would.

    Runs recorded under the old code replay under the new one when they next execute, so a test
    can check that a change keeps them going (see ``durable.patched``)::

        with durable.testing.world() as env:
            run = signup.start("ada")            # sleeps for a week under the old code
            env.wait_until_idle()
            with durable.testing.deploy(signup, signup_v2):
                env.advance("7 days")
                assert run.result() == ...
    """
    name = workflow.name
    previous = swap_code(name, code)
    try:
        yield
    finally:
        swap_code(name, previous)
