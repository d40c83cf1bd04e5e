"""DAG tests run the engine on the memory and SQLite worlds only (aws is covered elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Engine, engine_params, running_engine


@pytest.fixture(params=engine_params(["memory", "sqlite"]))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with running_engine(*request.param, tmp_path) as running:
        yield running
