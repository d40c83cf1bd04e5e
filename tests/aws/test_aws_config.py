"""Finding the resources: ``aws://?prefix=`` on a host without ``.durable/aws.json``, several
prefixes in one file, and ``durable world info`` saying where the world is (moto over HTTP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from durable import WorkflowFailed, WorldError, workflow
from tests.aws_server import REGION, running

boto3 = pytest.importorskip("boto3")

from cli import main  # noqa: E402
from worlds.aws import AwsWorld  # noqa: E402
from worlds.aws._bootstrap import bootstrap  # noqa: E402
from worlds.aws._config import (  # noqa: E402
    AwsConfig,
    forget_config,
    load_config,
    save_config,
)
from worlds.aws._payloads import PayloadStore  # noqa: E402

ACCOUNT = "123456789012"
BIG = 100 * 1024
"""Over the 64 KiB threshold: stored in S3."""


@workflow(name="aws_config.mirror")
def mirror(data: bytes) -> bytes:
    return data[::-1]


@workflow(name="aws_config.fail_loudly")
def fail_loudly(size: int) -> None:
    raise ValueError("x" * size)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no ``.durable/aws.json``, as on a worker host."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def made(prefix: str, endpoint: str) -> AwsConfig:
    """Bootstrap ``prefix`` as ``durable bootstrap --prefix`` does; returns what it saves."""
    return bootstrap(load_config(f"aws://?prefix={prefix}&endpoint_url={endpoint}")).config


def test_a_url_naming_only_the_prefix_finds_the_bucket_bootstrap_made(moto_endpoint, elsewhere):
    saved = made("shop", moto_endpoint)
    assert saved.bucket == f"shop-payloads-{ACCOUNT}"
    world = AwsWorld(f"aws://?prefix=shop&endpoint_url={moto_endpoint}")
    data = bytes(range(256)) * (BIG // 256)
    with running(world):
        assert mirror.start(data).result(timeout=30) == data[::-1]
        failed = fail_loudly.start(BIG)
        with pytest.raises(WorkflowFailed):
            failed.result(timeout=30)
        # `durable runs` reads each listed run's error, which is in S3 now.
        listed = {run.id: run for run in world.list_runs()}
    assert listed[failed.id].error is not None and len(listed[failed.id].error) > BIG
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    stored = s3.list_objects_v2(Bucket=saved.bucket, Prefix="shop/payloads/")
    assert len(stored["Contents"]) >= 3  # input, output, error


def test_a_bucket_named_in_the_url_wins_and_needs_no_account_id(moto_endpoint, elsewhere):
    made("shop", moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    s3.create_bucket(Bucket="my-payloads")
    world = AwsWorld(f"aws://?prefix=shop&bucket=my-payloads&endpoint_url={moto_endpoint}")
    try:
        item: dict[str, Any] = {}
        world.payloads.attr(item, "d", "wrun_1", b"x" * BIG)
        assert world.payloads.read(item, "d") == b"x" * BIG
        assert s3.list_objects_v2(Bucket="my-payloads")["KeyCount"] == 1
        assert world.clients._account is None  # STS was never asked
        assert world.location()["bucket"] == "my-payloads"
    finally:
        world.close()


def test_a_failed_account_lookup_says_how_to_name_the_bucket():
    def no_account() -> str:
        raise WorldError("AWS refused the request while asking STS (AccessDenied).")

    store = PayloadStore(None, "shop-payloads-{account}", "shop", 10, no_account)
    with pytest.raises(WorldError) as caught:
        store.attr({}, "d", "wrun_1", b"x" * 11)
    message = str(caught.value)
    assert "shop-payloads-{account}" in message and "AccessDenied" in message
    assert "aws://?prefix=shop&bucket=NAME" in message


def test_a_missing_bucket_error_says_what_bootstrap_names_it(moto_endpoint, elsewhere):
    world = AwsWorld(f"aws://?prefix=gone&endpoint_url={moto_endpoint}")
    try:
        with pytest.raises(WorldError) as caught:
            world.payloads.attr({}, "d", "wrun_1", b"x" * BIG)
    finally:
        world.close()
    message = str(caught.value)
    assert f"s3://gone-payloads-{ACCOUNT}" in message
    assert "NAME-payloads-<account id>" in message and "bucket=BUCKET" in message


# -- several prefixes in .durable/aws.json -------------------------------------------------------


def test_each_bootstrapped_prefix_keeps_its_entry_and_the_last_is_the_default(tmp_path):
    file = tmp_path / "aws.json"
    shop = AwsConfig(prefix="shop", region="eu-west-1", bucket="shop-payloads-1")
    blog = AwsConfig(prefix="blog", region="us-east-2", bucket="blog-payloads-1")
    assert save_config(shop, file) == ["shop"]
    assert save_config(blog, file) == ["shop", "blog"]
    assert load_config("aws://", file) == blog
    assert load_config("aws://?prefix=shop", file) == shop
    assert load_config("aws://?prefix=blog&bucket=other", file).bucket == "other"
    # A prefix the file does not hold: names from the prefix, the default's region.
    new = load_config("aws://?prefix=new", file)
    assert (new.table, new.bucket) == ("new-runs", "new-payloads-{account}")
    assert new.region == "us-east-2"

    assert save_config(shop, file) == ["blog", "shop"]  # bootstrapped again: the default
    assert load_config("aws://", file) == shop
    assert forget_config("shop", file) == (True, "blog")
    assert load_config("aws://", file) == blog
    assert forget_config("shop", file) == (False, "blog")
    assert forget_config("blog", file) == (True, None)
    assert not file.exists()


def test_a_file_written_for_one_prefix_is_still_read(tmp_path):
    file = tmp_path / "aws.json"
    old = AwsConfig(prefix="shop", region="eu-west-1", bucket="shop-payloads-1")
    file.write_text(json.dumps(old.to_json()))
    assert load_config("aws://", file) == old
    assert load_config("aws://?prefix=shop", file) == old
    assert save_config(AwsConfig(prefix="blog", bucket="b"), file) == ["shop", "blog"]
    assert load_config("aws://?prefix=shop", file) == old


def durable(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stderr
    return result


def test_bootstrap_of_a_second_prefix_says_the_first_is_still_there(moto_endpoint, elsewhere):
    durable("bootstrap", "--prefix", "shop", "--endpoint-url", moto_endpoint)
    second = durable("bootstrap", "--prefix", "blog", "--endpoint-url", moto_endpoint)
    assert "aws:// now finds these resources (prefix blog)" in second.stderr
    assert "it still holds aws://?prefix=shop" in second.stderr
    assert load_config("aws://").prefix == "blog"
    assert load_config("aws://?prefix=shop").bucket == f"shop-payloads-{ACCOUNT}"

    gone = durable("teardown", "--prefix", "blog", "--yes")
    assert "removed prefix blog from .durable/aws.json; aws:// now means prefix shop" in gone.stderr
    assert load_config("aws://") == load_config("aws://?prefix=shop")
    assert load_config("aws://").bucket == f"shop-payloads-{ACCOUNT}"


# -- durable world info -----------------------------------------------------------------------


def test_world_info_says_where_the_world_is(moto_endpoint, elsewhere):
    made("shop", moto_endpoint)
    env = {"DURABLE_WORLD": "aws://?prefix=shop", "AWS_ENDPOINT_URL": moto_endpoint}
    info = json.loads(durable("world", "info", "--json", env=env).stdout)
    assert info["backend"] == "aws" and info["total_runs"] == 0
    assert info["location"] == {
        "region": REGION,
        "table": "shop-runs",
        "queue": "shop-runs",
        "dead_letter_queue": "shop-runs-dlq",
        "bucket": f"shop-payloads-{ACCOUNT}",
        "endpoint_url": moto_endpoint,
    }
    shown = durable("world", "info", env=env).stdout
    for text in (REGION, "shop-runs-dlq", f"shop-payloads-{ACCOUNT}", moto_endpoint):
        assert text in shown
    assert "dead letter queue" in shown


def test_world_info_shows_where_it_looked_when_resources_are_missing(moto_endpoint, elsewhere):
    env = {"DURABLE_WORLD": "aws://?prefix=shpo", "AWS_ENDPOINT_URL": moto_endpoint}
    proc = durable("world", "info", "--json", env=env, ok=False)
    assert proc.exit_code == 1
    info = json.loads(proc.stdout)
    assert info["location"]["table"] == "shpo-runs (missing)"
    assert info["location"]["queue"] == "shpo-runs (missing)"
    assert info["location"]["region"] == REGION
    assert "shpo-runs" in info["error"] and "shpo-runs" in proc.stderr
    shown = durable("world", "info", env=env, ok=False)
    assert "shpo-runs (missing)" in shown.stdout and shown.exit_code == 1


def test_world_info_marks_a_missing_queue_while_the_table_is_there(moto_endpoint, elsewhere):
    config = made("shop", moto_endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=config.queue)["QueueUrl"])
    env = {"DURABLE_WORLD": "aws://?prefix=shop", "AWS_ENDPOINT_URL": moto_endpoint}
    info = json.loads(durable("world", "info", "--json", env=env).stdout)
    assert info["location"]["queue"] == "shop-runs (missing)"
    assert info["location"]["table"] == "shop-runs"
