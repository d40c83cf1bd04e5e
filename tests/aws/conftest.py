"""Every test here starts on an empty moto server (moto slows down as its state grows)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.aws_server import reset


@pytest.fixture(autouse=True)
def _empty_moto(moto_endpoint: str) -> None:
    reset(moto_endpoint)


@pytest.fixture
def handlers(world: Any) -> Iterator[Callable[..., Any]]:
    """Builds Lambda handlers on the test's ``world`` (each one a separate Lambda container),
    executing the workflows of ``tests/aws/lambda_workload.py``."""
    import durable.aws

    made: list[Any] = []

    def make(margin: float = 1.0, lease_ttl: float = 60.0) -> Any:
        handler = durable.aws.make_handler(world.url, ["lambda_workload"], margin=margin,
                                           lease_ttl=lease_ttl)
        made.append(handler)
        return handler

    try:
        yield make
    finally:
        for handler in made:
            handler.runtime.stop()
            handler.runtime.world.close()
