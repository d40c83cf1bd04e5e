"""pytest plugin: the ``durable_world`` fixture (see :func:`durable.testing.world`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from durable.testing import TestWorld, world


@pytest.fixture
def durable_world() -> Iterator[TestWorld]:
    """An isolated in-memory world with a time-skipping clock, installed for the test."""
    with world() as env:
        yield env
