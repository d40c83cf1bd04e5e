"""The Lambda handler's time margin: deploy fits it to the timeout, the handler says when it
hands runs back because of it (against a moto server, with real SQS messages)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from durable._errors import ConfigurationError

boto3 = pytest.importorskip("boto3")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lambda_workload as wl  # noqa: E402

from durable._client import use_runtime  # noqa: E402
from durable._runtime import Runtime, RuntimeOptions  # noqa: E402
from tests.aws_server import REGION, FakeContext, open_aws_world  # noqa: E402
from worlds.aws._bootstrap import bootstrap  # noqa: E402
from worlds.aws._config import url_defaults  # noqa: E402
from worlds.aws._deploy import DeployOptions, deploy  # noqa: E402


@pytest.fixture
def world(moto_endpoint: str) -> Iterator[Any]:
    world = open_aws_world(moto_endpoint)
    runtime = Runtime(world, RuntimeOptions(worker=False))
    previous = use_runtime(runtime)
    try:
        yield world
    finally:
        use_runtime(previous)
        runtime.stop()
        world.close()


def event_of(world: Any, endpoint: str) -> tuple[Any, str, dict[str, Any]]:
    """The one message in the world's queue, as the event Lambda passes."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url = sqs.get_queue_url(QueueName=world.config.queue)["QueueUrl"]
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
    (message,) = got
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": message["Attributes"]["ApproximateReceiveCount"]},
    }
    return sqs, url, {"Records": [record]}


def test_a_margin_as_long_as_the_invocation_is_an_error_in_the_log(
    world: Any, handlers: Any, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = wl.lw_sum.with_options(execute=False).start(1)
    _, _, event = event_of(world, moto_endpoint)
    with caplog.at_level(logging.WARNING, "durable.aws"):
        handlers(margin=30.0)(event, FakeContext(20.0))
    assert "DURABLE_TIME_MARGIN (30 s) is not shorter than the function's whole time" in (
        caplog.text
    )
    assert f"can never execute a run: run(s) {run.id} handed back" in caplog.text
    assert [r.levelname for r in caplog.records if "DURABLE_TIME_MARGIN" in r.message] == [
        "ERROR"
    ]
    assert world.get_run(run.id).status == "pending"


def test_handing_runs_back_at_the_margin_is_logged(
    world: Any, handlers: Any, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = wl.lw_slow.with_options(execute=False).start(6, 0.5)
    _, _, event = event_of(world, moto_endpoint)
    with caplog.at_level(logging.WARNING, "durable.aws"):
        handlers(margin=3.0)(event, FakeContext(3.5))
    said = f"DURABLE_TIME_MARGIN (3 s) before the function's timeout: handing back run(s) {run.id}"
    assert said in caplog.text
    assert world.get_run(run.id).lease_owner is None


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "flows.py").write_text("")
    return tmp_path


def test_deploy_fits_the_margin_to_a_short_timeout(app: Path, moto_endpoint: str) -> None:
    config = bootstrap(replace(url_defaults("margin"), endpoint_url=moto_endpoint)).config
    lam = boto3.client("lambda", endpoint_url=moto_endpoint, region_name=REGION)

    def margin_of(options: DeployOptions) -> str:
        deploy(config, ["app.flows"], options, cwd=app)
        env = lam.get_function(FunctionName=config.function)["Configuration"]["Environment"]
        return str(env["Variables"]["DURABLE_TIME_MARGIN"])

    assert margin_of(DeployOptions()) == "30"
    assert margin_of(DeployOptions(timeout=20)) == "5"
    assert margin_of(DeployOptions(timeout=60, time_margin=40)) == "40"
    with pytest.raises(ConfigurationError, match="--time-margin 20 must be .* less than --timeout"):
        deploy(config, ["app.flows"], DeployOptions(timeout=20, time_margin=20), cwd=app)
    with pytest.raises(ConfigurationError, match="--timeout 5 leaves no time to execute a run"):
        deploy(config, ["app.flows"], DeployOptions(timeout=5), cwd=app)


def test_a_function_deployed_with_a_short_timeout_executes_runs(
    world: Any, handlers: Any, moto_endpoint: str
) -> None:
    from worlds.aws._deploy import time_margin

    run = wl.lw_sum.with_options(execute=False).start(2)
    _, _, event = event_of(world, moto_endpoint)
    result = handlers(margin=float(time_margin(20)))(event, FakeContext(20.0))
    assert result == {"batchItemFailures": []}
    assert run.result(timeout=5) == [20, 21, 22]

