"""One prefix, two regions: the bucket and the role are not per region, so neither may be shared.

Against a moto server over HTTP: bootstrap refuses a second region before making anything, and
teardown in one region never removes the bucket or role that serve another.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest

from durable._errors import ConfigurationError
from tests.aws_server import REGION

boto3 = pytest.importorskip("boto3")

from worlds.aws._bootstrap import bootstrap, teardown  # noqa: E402
from worlds.aws._config import AwsConfig, url_defaults  # noqa: E402
from worlds.aws._infra import POLICY_NAME, Clients  # noqa: E402

OTHER = "eu-west-1"
_prefixes = itertools.count()


@pytest.fixture
def first(moto_endpoint: str) -> AwsConfig:
    """A prefix bootstrapped in us-east-1, as `durable bootstrap --prefix P` leaves it."""
    config = replace(
        url_defaults(f"reg{next(_prefixes)}"), endpoint_url=moto_endpoint, region=REGION
    )
    return bootstrap(config).config


def in_region(config: AwsConfig, region: str) -> AwsConfig:
    return replace(config, region=region)


def client(config: AwsConfig, service: str, region: str):
    return boto3.client(service, endpoint_url=config.endpoint_url, region_name=region)


def policy_regions(config: AwsConfig) -> set[str]:
    iam = client(config, "iam", REGION)
    document = iam.get_role_policy(RoleName=config.role, PolicyName=POLICY_NAME)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    table = next(s for s in document["Statement"] if s["Sid"] == "RunsTable")
    return {arn.split(":")[3] for arn in table["Resource"]}


def test_bootstrap_refuses_a_prefix_already_bootstrapped_in_another_region(first):
    with pytest.raises(ConfigurationError) as caught:
        bootstrap(in_region(first, OTHER))
    message = str(caught.value)
    assert f"prefix {first.prefix} is already bootstrapped in region {REGION}" in message
    assert f"--prefix {first.prefix}-{OTHER}" in message

    # Nothing was made in the other region, and the first region's role still serves it.
    tables = client(first, "dynamodb", OTHER).list_tables()["TableNames"]
    assert first.table not in tables
    assert policy_regions(first) == {REGION}
    # Bootstrapping the first region again is still fine.
    assert bootstrap(first).config == first


def test_teardown_in_another_region_keeps_the_bucket_and_role_of_the_first(first):
    s3 = client(first, "s3", REGION)
    s3.put_object(Bucket=first.bucket, Key=f"{first.prefix}/payloads/r1/x", Body=b"1")

    changes = teardown(in_region(first, OTHER))
    kept = {(c.resource, c.name): c for c in changes}
    assert kept[("role", first.role)].action == "kept"
    assert kept[("bucket", first.bucket)].action == "kept"
    assert f"serves prefix {first.prefix} in {REGION} too" in kept[("bucket", first.bucket)].detail
    assert not [c for c in changes if c.action == "removed"], changes

    assert s3.get_object(Bucket=first.bucket, Key=f"{first.prefix}/payloads/r1/x")["Body"].read()
    assert policy_regions(first) == {REGION}
    # The first region's teardown removes them.
    removed = {(c.resource, c.action) for c in teardown(first)}
    assert {("role", "removed"), ("bucket", "removed"), ("table", "removed")} <= removed


def test_teardown_of_a_second_region_made_before_the_refusal_keeps_the_shared_ones(first):
    # What an older bootstrap left: the second region's own table and queues, the shared
    # bucket (in the first region) and the role's policy rewritten for the second region.
    second = in_region(first, OTHER)
    ddb = client(first, "dynamodb", OTHER)
    from worlds.aws._bootstrap import _ensure_queue, _ensure_table, _policy

    made = Clients(second)
    _ensure_table(ddb, second)
    dlq_url, _ = _ensure_queue(made("sqs"), "dead-letter queue", second.dead_letter_queue,
                               second.prefix, {})
    queue_url, _ = _ensure_queue(made("sqs"), "queue", second.queue, second.prefix, {})
    arns = [
        made("sqs").get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for u in (queue_url, dlq_url)
    ]
    made("iam").put_role_policy(
        RoleName=second.role, PolicyName=POLICY_NAME,
        PolicyDocument=json.dumps(_policy(second, made.account(), *arns)),
    )
    assert policy_regions(first) == {OTHER}

    # Tearing the first region down keeps the bucket and the role the second one uses...
    changes = {(c.resource, c.name): c.action for c in teardown(first)}
    assert changes[("bucket", first.bucket)] == "kept"
    assert changes[("role", first.role)] == "kept"
    assert changes[("table", first.table)] == "removed"
    # ...and tearing the second down, the last region the prefix lives in, removes them.
    changes = {(c.resource, c.name): c.action for c in teardown(second)}
    assert changes[("table", second.table)] == "removed"
    assert changes[("role", second.role)] == "removed"
    assert changes[("bucket", second.bucket)] == "removed"
