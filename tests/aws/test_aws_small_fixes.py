"""Small things a user trial of the AWS world found (moto over HTTP where AWS is involved)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from durable._errors import ConfigurationError
from tests.aws_server import REGION

boto3 = pytest.importorskip("boto3")

from worlds.aws._bootstrap import bootstrap  # noqa: E402
from worlds.aws._config import load_config, url_defaults  # noqa: E402
from worlds.aws._infra import POLICY_NAME  # noqa: E402


@pytest.mark.parametrize("url", ["aws://shop", "aws://shop/", "aws:///shop"])
def test_a_prefix_in_the_host_is_refused_with_the_right_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"the prefix goes in the query, aws://\?prefix=shop"):
        load_config(url, path=tmp_path / "aws.json")


def test_the_worker_role_may_scan_the_table_as_durable_hooks_does(moto_endpoint: str) -> None:
    config = bootstrap(replace(url_defaults("scan"), endpoint_url=moto_endpoint)).config
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION)
    document = iam.get_role_policy(RoleName=config.role, PolicyName=POLICY_NAME)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    table = next(s for s in document["Statement"] if s["Sid"] == "RunsTable")
    assert "dynamodb:Scan" in table["Action"]


def test_botocore_does_not_announce_where_it_found_the_credentials(
    moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    from worlds.aws import AwsWorld

    with caplog.at_level(logging.INFO):
        world = AwsWorld(f"aws://?prefix=quiet&region={REGION}&endpoint_url={moto_endpoint}")
        world.close()
    assert "Found credentials" not in caplog.text


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_a_message_the_function_cannot_act_on_comes_back_in_seconds(moto_endpoint: str) -> None:
    import durable.aws
    from durable.world import NewRun
    from tests.aws_server import open_aws_world

    world = open_aws_world(moto_endpoint)
    handler = durable.aws.make_handler(world.url, [], margin=1.0)
    try:
        world.create_run(
            NewRun("wrun_stranger", "defined_nowhere", b'{"args":[],"kwargs":{}}'),
            owner=None, lease_ttl=30.0,
        )
        sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
        url = sqs.get_queue_url(QueueName=world.config.queue)["QueueUrl"]

        def receive() -> list[dict[str, Any]]:
            return list(sqs.receive_message(
                QueueUrl=url, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
            ).get("Messages", []))

        (message,) = receive()
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {"ApproximateReceiveCount": "1"},
        }
        result = handler({"Records": [record]}, _Context())
        assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        deadline = time.monotonic() + 15
        again: list[dict[str, Any]] = []
        while not again and time.monotonic() < deadline:
            time.sleep(0.5)
            again = receive()
        assert [m["MessageId"] for m in again] == [message["MessageId"]]
    finally:
        handler.runtime.stop()
        handler.runtime.world.close()
        world.close()


def test_dlq_says_what_its_receive_count_counts(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    config = bootstrap(replace(url_defaults("letters"), endpoint_url=moto_endpoint)).config
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    url = sqs.get_queue_url(QueueName=config.dead_letter_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"run":"wrun_1","at":0,"kind":"start"}')
    shown = CliRunner().invoke(main, ["dlq", "--prefix", "letters"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "RECEIVED" in shown.stdout and "RECEIVES" not in shown.stdout
    assert "earlier `durable dlq` listings included" in " ".join(shown.stderr.split())
