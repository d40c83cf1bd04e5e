"""A moto server on 127.0.0.1 for the AWS world's tests: a real HTTP endpoint, no AWS account.

One server per test session (``moto_endpoint``); ``fresh_aws`` resets its state before a test
and gives the test a unique resource prefix. Credentials and region are fake and set in the
environment so boto3 never looks for real ones.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions

REGION = "us-east-1"


class FakeContext:
    """Lambda's context object: the time left counts down from ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_credentials() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION


def reset(endpoint: str) -> None:
    """Clear every resource the server holds (~35 ms)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def configure_server(endpoint: str) -> None:
    # Lambda functions are stored and invoked without Docker.
    body = json.dumps({"lambda": {"use_docker": False}}).encode()
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def start_server() -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``tests/moto_process.py`` in a child process; returns its URL and the process."""
    fake_credentials()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("moto_process.py")), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        process.kill()
        raise RuntimeError("the moto server did not start")
    endpoint = f"http://127.0.0.1:{port}"
    configure_server(endpoint)
    return endpoint, process


_shared: tuple[str, subprocess.Popen[bytes]] | None = None


def shared_endpoint() -> str:
    """The URL of the moto server shared by this test session, started on first use."""
    global _shared
    if _shared is None:
        pytest.importorskip("boto3")
        pytest.importorskip("moto")
        _shared = start_server()
    return _shared[0]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server (a child process) shared by the test session."""
    yield shared_endpoint()


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _shared
    if _shared is not None:
        process = _shared[1]
        _shared = None
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()

_counter = 0


def create_world_resources(endpoint: str, prefix: str | None = None, **settings: object):
    """Create the table, queues and bucket of a fresh AWS world; returns its ``AwsConfig``."""
    global _counter
    import boto3

    from worlds.aws._config import AwsConfig
    from worlds.aws._schema import table_definition

    _counter += 1
    config = AwsConfig(
        prefix=prefix or f"t{os.getpid()}x{_counter}",
        region=REGION,
        endpoint_url=endpoint,
        **{"sweep_interval": 0.0, "receive_wait": 0.0, **settings},  # type: ignore[arg-type]
    )
    session = boto3.session.Session(region_name=REGION)
    ddb = session.client("dynamodb", endpoint_url=endpoint)
    ddb.create_table(**table_definition(config.table))
    sqs = session.client("sqs", endpoint_url=endpoint)
    dlq = sqs.create_queue(QueueName=config.dead_letter_queue)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sqs.create_queue(
        QueueName=config.queue,
        Attributes={
            "VisibilityTimeout": str(config.visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(config.max_receives)}
            ),
        },
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=config.bucket)
    return config


def open_aws_world(endpoint: str, clock=None, config=None, **settings: object):
    """An ``AwsWorld`` on fresh resources (or on ``config``'s, as a second process would)."""
    from worlds.aws import AwsWorld

    config = config or create_world_resources(endpoint, **settings)
    return AwsWorld("aws://", config=config, clock=clock)


@contextmanager
def running(world: Any, close: bool = True, **options: Any) -> Iterator[Runtime]:
    """An engine with an embedded worker on ``world``, installed for the block."""
    settings: dict[str, Any] = {"lease_ttl": 10.0, "inline_wait_limit": 0.0, "poll_interval": 0.02}
    settings.update(options)
    runtime = Runtime(world, RuntimeOptions(**settings))
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()
        if close:
            world.close()
