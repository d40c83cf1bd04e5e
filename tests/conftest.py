"""Shared fixtures: every world under test, and an engine bound to one of them."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from durable._client import use_runtime  # noqa: E402
from durable._runtime import Runtime, RuntimeOptions  # noqa: E402
from durable.testing import Clock  # noqa: E402
from durable.world import World  # noqa: E402
from worlds.memory import MemoryWorld  # noqa: E402

pytest_plugins = ["tests.aws_server"]


def _sqlite(tmp_path: Path, clock: Callable[[], float] | None) -> World:
    from worlds.sqlite import SqliteWorld

    return SqliteWorld(f"sqlite:///{tmp_path}/world.db", clock=clock)


def _aws(tmp_path: Path, clock: Callable[[], float] | None) -> World:
    from tests.aws_server import open_aws_world, reset, shared_endpoint

    endpoint = shared_endpoint()
    reset(endpoint)  # moto slows down as its state grows
    return open_aws_world(endpoint, clock=clock)


WORLD_FACTORIES: dict[str, Callable[[Path, Callable[[], float] | None], World]] = {
    "memory": lambda tmp_path, clock: MemoryWorld("memory://", clock=clock),
    "sqlite": _sqlite,
    "aws": _aws,
}


@dataclass
class Engine:
    """A runtime on a fresh world with a controllable clock, installed for one test."""

    runtime: Runtime
    world: World
    clock: Clock
    kind: str
    forced_replay: bool


def engine_params(kinds: list[str]) -> list[object]:
    """Engine fixture parameters: each world kind, live and in forced-replay mode."""
    return [
        pytest.param((kind, forced), id=f"{kind}-{'forced-replay' if forced else 'live'}")
        for kind in kinds
        for forced in (False, True)
    ]


ENGINE_PARAMS = engine_params(list(WORLD_FACTORIES))

FORCED_REPLAY_ON_AWS = {"test_engine.py"}
"""Modules whose engine tests also run forced-replay on the AWS world. Forced replay checks the
engine's replay, the same on every world; on AWS it mostly re-checks suspension and leasing, which
the engine tests cover, at moto's ~10 ms a request. Elsewhere AWS runs the live mode only."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="forced replay runs on AWS for test_engine.py only (slow moto)")
    for item in items:
        if "[aws-forced-replay]" in item.nodeid and item.path.name not in FORCED_REPLAY_ON_AWS:
            item.add_marker(skip)


@contextlib.contextmanager
def running_engine(kind: str, forced: bool, tmp_path: Path) -> Iterator[Engine]:
    """A runtime on a fresh world of ``kind`` with a controllable clock, installed meanwhile."""
    clock = Clock()
    world = WORLD_FACTORIES[kind](tmp_path, clock)
    options = RuntimeOptions(
        lease_ttl=5.0,
        inline_wait_limit=0.0,
        poll_interval=0.01,
        force_replay=forced,
        time_skipping=clock.advance_to,
    )
    runtime = Runtime(world, options)
    previous = use_runtime(runtime)
    try:
        yield Engine(runtime, world, clock, kind, forced)
    finally:
        use_runtime(previous)
        runtime.stop()
        world.close()


@pytest.fixture(params=ENGINE_PARAMS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with running_engine(*request.param, tmp_path) as running:
        yield running


@pytest.fixture
def isolated_cwd(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.fixture(autouse=True)
def _no_durable_context_left_behind() -> Iterator[None]:
    """Fail a test that leaves a workflow frame or step context set in the thread that ran it:
    a later test would read that run's clock or frame as its own."""
    from durable._context import current_frame, current_step, step_clock
    from durable._engine import step_recorder

    yield
    left = {
        var.name: var.get()
        for var in (current_frame, current_step, step_clock, step_recorder)
        if var.get() is not None
    }
    assert not left, f"durable context left set after the test: {left}"
