"""Small things a user trial of the AWS world found (moto over HTTP where AWS is involved)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

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
