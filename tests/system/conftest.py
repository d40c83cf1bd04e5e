"""Fixtures for system tests (helpers live in ``_support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system._support import Procs


@pytest.fixture
def procs() -> Iterator[Procs]:
    manager = Procs()
    try:
        yield manager
    finally:
        manager.cleanup()
