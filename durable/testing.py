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

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from durable._client import current_runtime, use_runtime
from durable._durations import parse_duration
from durable._runtime import Runtime, RuntimeOptions
from worlds.memory import MemoryWorld


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

    def advance(self, duration: float | str | timedelta) -> None:
        """Move time forward (seconds, a timedelta or ``"7 days"``) and let due runs wake up.

        Runs executing meanwhile keep their leases: the jump would make them look abandoned,
        and the worker would start each again beside itself.
        """
        seconds = parse_duration(duration)
        runtime = self.runtime
        self.world.renew_leases(runtime.owner, runtime.options.lease_ttl + seconds)
        self.clock.advance(seconds)
        runtime.poll_once()


@contextmanager
def world(*, time_skipping: bool = True, force_replay: bool | None = None) -> Iterator[TestWorld]:
    """An isolated in-memory world for tests, installed as this process's world.

    Args:
        time_skipping: while a test waits for a result and nothing is executing, jump the
            clock to the next due sleep or retry, so long sleeps take no real time.
        force_replay: suspend and replay at every durable point, to prove a workflow replays
            (default: on when the environment has ``DURABLE_FORCE_REPLAY=1``).
    """
    if force_replay is None:
        force_replay = os.environ.get("DURABLE_FORCE_REPLAY") == "1"
    clock = Clock()
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
