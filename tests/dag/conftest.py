"""DAG tests run the engine on the memory and SQLite worlds only (aws is covered elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.testing import Clock
from tests.conftest import WORLD_FACTORIES, Engine

DAG_ENGINE_PARAMS = [
    pytest.param((kind, forced), id=f"{kind}-{'forced-replay' if forced else 'live'}")
    for kind in ("memory", "sqlite")
    for forced in (False, True)
]


@pytest.fixture(params=DAG_ENGINE_PARAMS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    kind, forced = request.param
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
