"""Fixtures for the World conformance suite: every test taking ``world`` runs on every world.

To add a world (e.g. ``aws``), add one entry to ``WORLDS``: a :class:`WorldKind` whose ``open``
builds a world on a fresh store for the test (it may pull other fixtures, such as a moto server,
through ``request.getfixturevalue``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from durable.world import World
from worlds.memory import MemoryWorld
from worlds.sqlite import SqliteWorld

START = 1_700_000_000.0


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when


@dataclass(frozen=True)
class WorldKind:
    """How the suite opens one kind of world."""

    open: Callable[[pytest.FixtureRequest, Callable[[], float]], World]
    """Open a world for the current test. Called again in the same test, it opens another
    handle on the same store when ``shared`` (as another process would)."""
    shared: bool
    """Several world objects (and processes) can open the same store."""


def _memory(request: pytest.FixtureRequest, clock: Callable[[], float]) -> World:
    return MemoryWorld("memory://", clock=clock)


def _sqlite(request: pytest.FixtureRequest, clock: Callable[[], float]) -> World:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return SqliteWorld(f"sqlite:///{tmp_path / 'conformance.db'}", clock=clock)


def _aws(request: pytest.FixtureRequest, clock: Callable[[], float]) -> World:
    from tests.aws_server import open_aws_world, reset

    endpoint: str = request.getfixturevalue("moto_endpoint")
    # A second open in the same test shares the first one's resources, as another process would.
    node = request.node
    config = getattr(node, "_aws_config", None)
    if config is None:
        reset(endpoint)  # moto slows down as its state grows
    world = open_aws_world(endpoint, clock=clock, config=config)
    node._aws_config = world.config  # type: ignore[attr-defined]
    return world


WORLDS: dict[str, WorldKind] = {
    "memory": WorldKind(open=_memory, shared=False),
    "sqlite": WorldKind(open=_sqlite, shared=True),
    "aws": WorldKind(open=_aws, shared=True),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=list(WORLDS))
def world_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(request: pytest.FixtureRequest, world_kind: str, clock: FakeClock) -> Iterator[World]:
    opened = WORLDS[world_kind].open(request, clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def open_again(
    request: pytest.FixtureRequest, world_kind: str, world: World, clock: FakeClock
) -> Iterator[Callable[[], World]]:
    """Open more handles on the ``world`` fixture's store (skips worlds that cannot share)."""
    kind = WORLDS[world_kind]
    if not kind.shared:
        pytest.skip(f"the {world_kind} world cannot be opened twice")
    handles: list[World] = []

    def again() -> World:
        handle = kind.open(request, clock)
        handles.append(handle)
        return handle

    try:
        yield again
    finally:
        for handle in handles:
            handle.close()
