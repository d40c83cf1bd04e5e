"""An endpoint nobody listens on: commands fail within seconds, workers say so and keep trying.

Before, botocore's standard retries (10 attempts, backoff up to 20 s each) kept ``durable
runs`` silent for over a minute, and a worker logged nothing for as long.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from durable._errors import WorldError
from durable._runtime import Runtime, RuntimeOptions
from tests.aws_server import REGION, fake_credentials

boto3 = pytest.importorskip("boto3")

from worlds.aws import AwsWorld  # noqa: E402
from worlds.aws._config import AwsConfig  # noqa: E402


@pytest.fixture
def closed() -> str:
    """The URL of a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def world(closed: str) -> Iterator[AwsWorld]:
    fake_credentials()
    config = AwsConfig(prefix="nowhere", region=REGION, endpoint_url=closed, sweep_interval=0.0)
    world = AwsWorld("aws://", config=config)
    try:
        yield world
    finally:
        world.close()


def test_a_call_fails_within_seconds_naming_the_endpoint(world: AwsWorld, closed: str) -> None:
    started = time.monotonic()
    with pytest.raises(WorldError) as caught:
        world.list_runs()
    took = time.monotonic() - started
    assert took < 10, f"took {took:.1f} s to give up"
    assert f"cannot reach {closed}/ while listing pending runs" in str(caught.value)
    assert caught.value.transient


def test_a_worker_warns_at_once_and_keeps_trying(
    world: AwsWorld, closed: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = Runtime(world, RuntimeOptions(poll_interval=0.05))
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        runtime.ensure_worker()
        try:
            while time.monotonic() - started < 15:
                warned = [r for r in caplog.records if f"cannot reach {closed}" in r.message]
                if len(warned) >= 2:
                    break
                time.sleep(0.1)
        finally:
            runtime.stop()
    took = time.monotonic() - started
    assert len(warned) >= 2, f"{len(warned)} warning(s) in {took:.1f} s: {caplog.text}"
    assert took < 12, took
    assert runtime.fatal_error is None
