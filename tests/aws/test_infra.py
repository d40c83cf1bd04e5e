"""bootstrap, deploy, outputs, logs, dlq and teardown against a moto server over HTTP."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from durable._errors import ConfigurationError
from tests.aws_server import REGION, reset

boto3 = pytest.importorskip("boto3")

from worlds.aws._bootstrap import bootstrap, teardown  # noqa: E402
from worlds.aws._config import AwsConfig, load_config, url_defaults  # noqa: E402
from worlds.aws._deploy import DeployOptions, deploy, tail_logs  # noqa: E402
from worlds.aws._infra import (  # noqa: E402
    HANDLER,
    TAG_KEY,
    Clients,
    dead_letters,
    outputs,
    redrive,
    world_url,
)
from worlds.aws._schema import BY_DUE, BY_STATUS, TTL_ATTRIBUTE, table_definition  # noqa: E402
from worlds.aws._template import template  # noqa: E402

ACCOUNT = "123456789012"
_prefixes = itertools.count()


def from_url(url: str) -> AwsConfig:
    """What the world reads from ``url`` alone (no .durable/aws.json, no AWS_ENDPOINT_URL)."""
    assert "AWS_ENDPOINT_URL" not in os.environ
    return load_config(url, path=Path("/nonexistent/aws.json"))


@pytest.fixture
def config(moto_endpoint: str) -> AwsConfig:
    reset(moto_endpoint)
    # What aws://?prefix= gives: the bucket is named after the account, as bootstrap makes it.
    return replace(url_defaults(f"infra{next(_prefixes)}"), endpoint_url=moto_endpoint)


@pytest.fixture
def clients(config: AwsConfig) -> Clients:
    """One set of boto3 clients per test (making them costs more than most calls)."""
    return Clients(config)


@pytest.fixture
def aws(moto_endpoint: str):
    def client(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION)

    return client


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A tiny project: package ``app`` with a workflow module."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "flows.py").write_text(
        "from durable import workflow\n\n\n@workflow\ndef hello(name: str) -> str:\n"
        "    return f'hello {name}'\n"
    )
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "flows.cpython-311.pyc").write_bytes(b"\0")
    return tmp_path


def actions(changes) -> dict[tuple[str, str], str]:
    return {(c.resource, c.name): c.action for c in changes}


def test_bootstrap_makes_every_resource_and_a_rerun_changes_nothing(config, aws, clients):
    done = bootstrap(config, clients=clients)
    bucket = f"{config.prefix}-payloads-{ACCOUNT}"
    assert done.config.bucket == bucket
    assert done.config.region == REGION
    assert set(actions(done.changes).values()) == {"created"}
    assert {c.resource for c in done.changes} == {
        "table", "ttl", "dead-letter queue", "queue", "bucket", "public access block",
        "encryption", "lifecycle", "role", "policy",
    }  # fmt: skip

    table = aws("dynamodb").describe_table(TableName=config.table)["Table"]
    wanted = table_definition(config.table)
    assert table["KeySchema"] == wanted["KeySchema"]
    indexes = {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {i["IndexName"]: i["KeySchema"] for i in wanted["GlobalSecondaryIndexes"]}
    assert set(indexes) == {BY_STATUS, BY_DUE}
    ttl = aws("dynamodb").describe_time_to_live(TableName=config.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}
    tags = aws("dynamodb").list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {"Key": TAG_KEY, "Value": config.prefix} in tags

    sqs = aws("sqs")
    queue = sqs.get_queue_url(QueueName=config.queue)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=config.dead_letter_queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    dlq_attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_attributes["QueueArn"],
        "maxReceiveCount": config.max_receives,
    }
    assert attributes["VisibilityTimeout"] == str(config.visibility_timeout)
    assert dlq_attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert sqs.list_queue_tags(QueueUrl=queue)["Tags"] == {TAG_KEY: config.prefix}

    s3 = aws("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"),
        True,
    )
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Filter"] == {"Prefix": f"{config.prefix}/payloads/"}
    assert rule["Expiration"] == {"Days": config.retention_days + config.max_run_days}
    assert rule["Status"] == "Enabled"
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [
        {"Key": TAG_KEY, "Value": config.prefix}
    ]

    iam = aws("iam")
    role = iam.get_role(RoleName=config.role)["Role"]
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert iam.list_role_policies(RoleName=config.role)["PolicyNames"] == ["durable-worker"]
    policy = iam.get_role_policy(RoleName=config.role, PolicyName="durable-worker")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    table_arn = table["TableArn"]
    assert statements["RunsTable"]["Resource"] == [table_arn, f"{table_arn}/index/*"]
    assert all(a.startswith("dynamodb:") for a in statements["RunsTable"]["Action"])
    assert "dynamodb:DeleteTable" not in statements["RunsTable"]["Action"]
    assert sorted(statements["RunsQueues"]["Resource"]) == sorted(
        [attributes["QueueArn"], dlq_attributes["QueueArn"]]
    )
    assert statements["Payloads"]["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert statements["Payloads"]["Action"] == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    log_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{config.function}"
    assert statements["LogStreams"]["Resource"] == f"{log_arn}:*"
    every = [s["Resource"] for s in statements.values()]
    assert "*" not in json.dumps(every).replace("/*", "").replace(":*", "")

    before = outputs(done.config, clients=clients)
    # Even from the prefix alone, the world URL names the bucket bootstrap made.
    assert from_url(outputs(config, clients=clients)["world_url"]) == replace(
        done.config, endpoint_url=None
    )
    again = bootstrap(done.config, clients=clients)
    assert again.config == done.config
    assert set(actions(again.changes).values()) == {"unchanged"}
    assert actions(again.changes).keys() == actions(done.changes).keys()
    assert outputs(again.config, clients=clients) == before
    # Starting from the prefix alone finds the same bucket (the account id is appended again).
    assert bootstrap(config, clients=clients).config == done.config


def test_bootstrap_puts_back_what_drifted_and_takes_new_settings(config, aws, clients):
    done = bootstrap(config, clients=clients)
    sqs = aws("sqs")
    queue = sqs.get_queue_url(QueueName=config.queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "30"})
    aws("s3").delete_public_access_block(Bucket=done.config.bucket)

    changed = replace(done.config, retention_days=7, max_run_days=30, max_receives=3)
    again = bootstrap(changed, clients=clients)
    assert {k: v for k, v in actions(again.changes).items() if v != "unchanged"} == {
        ("queue", config.queue): "updated",
        ("public access block", done.config.bucket): "created",
        ("lifecycle", done.config.bucket): "updated",
    }
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "900"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3
    rules = aws("s3").get_bucket_lifecycle_configuration(Bucket=done.config.bucket)["Rules"]
    assert [r["Expiration"] for r in rules] == [{"Days": 37}]


def test_foreign_resources_are_used_as_they_are_and_never_removed(config, aws, clients):
    # Someone made a table and a queue of the same names, without durable's tag.
    aws("dynamodb").create_table(**table_definition(config.table))
    foreign = aws("sqs").create_queue(QueueName=config.queue)["QueueUrl"]

    done = bootstrap(config, clients=clients)
    assert actions(done.changes)[("table", config.table)] == "foreign"
    assert actions(done.changes)[("queue", config.queue)] == "foreign"
    assert ("ttl", f"{config.table}.{TTL_ATTRIBUTE}") not in actions(done.changes)
    assert actions(done.changes)[("dead-letter queue", config.dead_letter_queue)] == "created"
    assert (
        "RedrivePolicy"
        not in aws("sqs").get_queue_attributes(QueueUrl=foreign, AttributeNames=["All"])[
            "Attributes"
        ]
    )

    removed = teardown(done.config, clients=clients)
    assert actions(removed)[("table", config.table)] == "kept"
    assert actions(removed)[("queue", config.queue)] == "kept"
    assert actions(removed)[("dead-letter queue", config.dead_letter_queue)] == "removed"
    assert actions(removed)[("role", config.role)] == "removed"
    kept = next(c for c in removed if c.resource == "table")
    assert "durable:prefix" in kept.detail
    aws("dynamodb").describe_table(TableName=config.table)
    assert aws("sqs").get_queue_url(QueueName=config.queue)["QueueUrl"] == foreign
    assert {c.action for c in teardown(done.config, clients=clients)} == {"kept"}


def test_bootstrap_refuses_a_table_laid_out_differently(config, aws, clients):
    aws("dynamodb").create_table(
        TableName=config.table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(ConfigurationError, match=f"table {config.table} exists but is not laid"):
        bootstrap(config, clients=clients)


def test_bootstrap_rejects_a_prefix_that_cannot_name_resources(config, clients):
    with pytest.raises(ConfigurationError, match="cannot name AWS resources"):
        bootstrap(replace(config, prefix="Shop_Prod"), clients=clients)


def test_deploy_creates_the_function_and_a_rerun_updates_it(config, aws, app, clients):
    with pytest.raises(ConfigurationError, match="run `durable bootstrap"):
        deploy(config, ["app.flows"], cwd=app, clients=clients)
    made = bootstrap(config, clients=clients).config

    first = deploy(made, ["app/flows.py"], cwd=app, clients=clients)
    assert first.package.modules == ("app.flows",)
    assert {c.resource: c.action for c in first.changes} == {
        "log group": "created",
        "function": "created",
        "event source mapping": "created",
    }
    lam = aws("lambda")
    function = lam.get_function(FunctionName=config.function)
    settings = function["Configuration"]
    assert settings["FunctionArn"] == first.function_arn
    assert settings["Handler"] == HANDLER
    assert settings["Runtime"] == "python3.11"
    assert (settings["Timeout"], settings["MemorySize"]) == (300, 512)
    assert settings["Role"] == aws("iam").get_role(RoleName=config.role)["Role"]["Arn"]
    env = settings["Environment"]["Variables"]
    assert env["DURABLE_MODULES"] == "app.flows"
    assert from_url(env["DURABLE_WORLD"]) == replace(made, endpoint_url=None)
    assert function["Tags"] == {TAG_KEY: config.prefix}

    names = zipfile.ZipFile(io.BytesIO(first.package.data)).namelist()
    assert {"app/__init__.py", "app/flows.py", "durable/__init__.py", "worlds/aws/_world.py"} <= (
        set(names)
    )
    assert not [n for n in names if "__pycache__" in n or n.startswith(("boto3/", "botocore/"))]

    queue = aws("sqs").get_queue_url(QueueName=config.queue)["QueueUrl"]
    queue_arn = aws("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    (mapping,) = lam.list_event_source_mappings(FunctionName=config.function)["EventSourceMappings"]
    assert mapping["EventSourceArn"] == queue_arn["Attributes"]["QueueArn"]
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    group = f"/aws/lambda/{config.function}"
    (found,) = aws("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 30

    (app / "app" / "flows.py").write_text("# changed\n" + (app / "app" / "flows.py").read_text())
    second = deploy(
        made, ["app.flows"], DeployOptions(memory=1024, timeout=60), cwd=app, clients=clients
    )
    change = next(c for c in second.changes if c.resource == "function")
    assert change.action == "updated"
    assert change.detail.startswith("code (")
    assert "memorysize" in change.detail and "timeout" in change.detail
    settings = lam.get_function(FunctionName=config.function)["Configuration"]
    assert (settings["Timeout"], settings["MemorySize"]) == (60, 1024)
    assert settings["CodeSha256"] == second.package.sha256 != first.package.sha256
    mappings = lam.list_event_source_mappings(FunctionName=config.function)
    assert len(mappings["EventSourceMappings"]) == 1

    third = deploy(
        made, ["app.flows"], DeployOptions(memory=1024, timeout=60), cwd=app, clients=clients
    )
    assert {c.action for c in third.changes} == {"unchanged"}
    assert outputs(made, clients=clients)["function_arn"] == first.function_arn


def test_deploy_refuses_bad_input_with_one_clear_line(config, aws, app, clients):
    made = bootstrap(config, clients=clients).config
    with pytest.raises(ConfigurationError, match="shorter than the queue's visibility timeout"):
        deploy(made, ["app.flows"], DeployOptions(timeout=900), cwd=app, clients=clients)
    with pytest.raises(ConfigurationError, match="module app.nothing not found"):
        deploy(made, ["app.nothing"], cwd=app, clients=clients)
    with pytest.raises(ConfigurationError, match="module nowhere_at_all not found"):
        deploy(made, ["nowhere_at_all"], cwd=app, clients=clients)
    (app / "elsewhere.py").write_text("")
    with pytest.raises(ConfigurationError, match="outside the working directory"):
        deploy(made, ["../elsewhere.py"], cwd=app / "app", clients=clients)
    role = aws("iam").get_role(RoleName=config.role)["Role"]["Arn"]
    aws("lambda").create_function(
        FunctionName=config.function,
        Runtime="python3.11",
        Role=role,
        Handler="x.handler",
        Code={"ZipFile": _zip({"x.py": "def handler(e, c): pass\n"})},
    )
    with pytest.raises(ConfigurationError, match="durable deploy does not replace it"):
        deploy(made, ["app.flows"], cwd=app, clients=clients)
    removed = teardown(made, clients=clients)
    assert actions(removed)[("function", config.function)] == "kept"
    aws("lambda").get_function(FunctionName=config.function)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_logs_reads_the_function_log_group(config, aws, app, clients):
    with pytest.raises(ConfigurationError, match="does not exist yet"):
        list(tail_logs(config, since=3600, clients=clients))
    made = bootstrap(config, clients=clients).config
    deploy(made, ["app.flows"], cwd=app, clients=clients)
    logs = aws("logs")
    group = f"/aws/lambda/{config.function}"
    logs.create_log_stream(logGroupName=group, logStreamName="2030/01/01/[$LATEST]abc")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2030/01/01/[$LATEST]abc",
        logEvents=[
            {"timestamp": now - 7200_000, "message": "too old\n"},
            {"timestamp": now - 1000, "message": "START run r1\n"},
            {"timestamp": now, "message": "END run r1\n"},
        ],
    )
    lines = list(tail_logs(made, since=3600, clients=clients))
    assert [line.message for line in lines] == ["START run r1", "END run r1"]
    assert lines[0].stream == "2030/01/01/[$LATEST]abc"
    assert abs(lines[1].timestamp - now / 1000) < 0.01
    assert [
        line.message for line in tail_logs(made, since=3600, pattern="END", clients=clients)
    ] == ["END run r1"]

    following = tail_logs(made, since=3600, follow=True, poll=0.05, clients=clients)
    assert [next(following).message for _ in range(2)] == ["START run r1", "END run r1"]
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2030/01/01/[$LATEST]abc",
        logEvents=[{"timestamp": now + 5, "message": "START run r2\n"}],
    )
    assert next(following).message == "START run r2"
    following.close()


def test_teardown_removes_everything_once(config, aws, app, clients):
    made = bootstrap(config, clients=clients).config
    deploy(made, ["app.flows"], cwd=app, clients=clients)
    aws("s3").put_object(Bucket=made.bucket, Key=f"{config.prefix}/payloads/r1/x", Body=b"1")

    removed = teardown(made, clients=clients)
    assert {c.action for c in removed} == {"removed"}
    assert [c.resource for c in removed] == [
        "event source mapping", "function", "log group", "role", "queue", "dead-letter queue",
        "bucket", "table",
    ]  # fmt: skip
    assert next(c for c in removed if c.resource == "bucket").detail == "1 object(s)"
    left = outputs(made, clients=clients)
    assert left["table_arn"] is left["queue_url"] is left["role_arn"] is left["function_arn"]
    assert left["table_arn"] is None and left["bucket_exists"] is False
    assert teardown(made, clients=clients) == []
    # And it can be made again right away.
    assert bootstrap(made, clients=clients).config == made


def test_teardown_can_keep_the_data(config, aws, clients):
    made = bootstrap(config, clients=clients).config
    kept = teardown(made, keep_data=True, clients=clients)
    assert actions(kept)[("table", config.table)] == "kept"
    assert actions(kept)[("bucket", made.bucket)] == "kept"
    aws("dynamodb").describe_table(TableName=config.table)
    assert [c.action for c in teardown(made, clients=clients)] == ["removed", "removed"]


def test_template_describes_the_same_resources(config, aws, clients):
    document = template(config)
    json.loads(json.dumps(document))
    resources = document["Resources"]
    assert {name: r["Type"] for name, r in resources.items()} == {
        "Table": "AWS::DynamoDB::Table",
        "DeadLetterQueue": "AWS::SQS::Queue",
        "Queue": "AWS::SQS::Queue",
        "Bucket": "AWS::S3::Bucket",
        "WorkerRole": "AWS::IAM::Role",
    }
    table = resources["Table"]["Properties"]
    assert table["KeySchema"] == table_definition(config.table)["KeySchema"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    queue = resources["Queue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == config.max_receives
    assert queue["VisibilityTimeout"] == config.visibility_timeout
    bucket = resources["Bucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 395
    role = resources["WorkerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }

    # CloudFormation makes them; bootstrap then uses them and teardown leaves them to the stack.
    cloudformation = aws("cloudformation")
    cloudformation.create_stack(
        StackName=config.prefix,
        TemplateBody=json.dumps(document),
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cloudformation.describe_stacks(StackName=config.prefix)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    done = bootstrap(config, clients=clients)
    assert {c.resource: c.action for c in done.changes} == dict.fromkeys(
        ("table", "dead-letter queue", "queue", "bucket", "role"), "foreign"
    )
    assert {o["OutputValue"] for o in stack["Outputs"]} >= {config.table, done.config.bucket}
    assert {c.action for c in teardown(done.config, clients=clients)} == {"kept"}


def test_world_url_finds_the_same_resources(config):
    made = replace(config, region="eu-west-1", bucket="my-bucket", retention_days=7)
    assert from_url(world_url(made)) == replace(made, endpoint_url=None)
    assert world_url(replace(url_defaults("p"), region="us-east-1")) == (
        "aws://?prefix=p&region=us-east-1"
    )
    # A bucket named in code (not after the account) is named in the URL too.
    assert from_url(world_url(AwsConfig(prefix="p"))).bucket == "p-payloads"


def test_dlq_lists_messages_without_removing_them_and_redrives(config, aws, clients):
    made = bootstrap(config, clients=clients).config
    sqs = aws("sqs")
    dlq = sqs.get_queue_url(QueueName=config.dead_letter_queue)["QueueUrl"]
    at = time.time()
    for run, kind in (("r1", "start"), ("r2", "wake"), ("r3", "hook")):
        body = json.dumps({"run": run, "at": at, "kind": kind})
        sqs.send_message(QueueUrl=dlq, MessageBody=body)
    sqs.send_message(QueueUrl=dlq, MessageBody="not json")

    letters = dead_letters(made, wait=0, clients=clients)
    assert sorted((m.run, m.kind) for m in letters if m.run) == [
        ("r1", "start"), ("r2", "wake"), ("r3", "hook"),
    ]  # fmt: skip
    assert [m.body for m in letters if m.run is None] == ["not json"]
    assert {m.receives for m in letters} == {0}
    assert all(abs(m.sent - at) < 5 for m in letters)
    assert next(m for m in letters if m.run == "r1").at == pytest.approx(at)
    again = dead_letters(made, wait=0, clients=clients)
    assert len(again) == 4 and {m.receives for m in again} == {1}

    moved = redrive(made, runs=frozenset({"r2"}), wait=0, clients=clients)
    assert [m.run for m in moved] == ["r2"]
    queue = sqs.get_queue_url(QueueName=config.queue)["QueueUrl"]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["run"] for m in received] == ["r2"]
    assert sorted(m.run or "-" for m in dead_letters(made, wait=0, clients=clients)) == [
        "-",
        "r1",
        "r3",
    ]
    assert len(redrive(made, wait=0, clients=clients)) == 3
    assert dead_letters(made, wait=0, clients=clients) == []


def test_the_commands_as_a_user_runs_them(config, moto_endpoint, tmp_path):
    script = Path(sys.executable).parent / "durable"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )

    def durable(*args: str, stdin: str | None = None, ok: bool = True):
        done = subprocess.run(
            [str(script), *args],
            cwd=tmp_path,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode == 0) is ok, done.stderr
        return done

    made = durable("bootstrap", "--endpoint-url", moto_endpoint, "--prefix", config.prefix)
    assert "wrote .durable/aws.json" in made.stderr
    assert "created" in made.stdout and config.table in made.stdout
    stored = json.loads((tmp_path / ".durable" / "aws.json").read_text())
    assert stored["default"] == config.prefix
    saved = stored["prefixes"][config.prefix]
    assert saved["bucket"] == f"{config.prefix}-payloads-{ACCOUNT}"
    assert saved["endpoint_url"] == moto_endpoint and saved["region"] == REGION

    # Every other command finds the resources through .durable/aws.json alone.
    found = json.loads(durable("outputs", "--json").stdout)
    assert found["table_arn"].endswith(f":table/{config.table}")
    assert found["bucket"] == saved["bucket"] and found["function_arn"] is None
    assert json.loads(durable("dlq", "--json").stdout) == {
        "queue": config.dead_letter_queue,
        "messages": [],
    }
    cloud = json.loads(durable("bootstrap", "--template").stdout)
    assert cloud["Resources"]["Queue"]["Properties"]["QueueName"] == config.queue

    no = durable("teardown", stdin="n\n", ok=False)
    assert "Aborted" in no.stderr
    assert (tmp_path / ".durable" / "aws.json").exists()
    boto3.client("dynamodb", endpoint_url=moto_endpoint).describe_table(TableName=config.table)

    gone = json.loads(durable("teardown", "--yes", "--json").stdout)
    assert {c["action"] for c in gone["changes"]} == {"removed"}
    assert gone["forgot"] == str(Path(".durable") / "aws.json")
    assert not (tmp_path / ".durable" / "aws.json").exists()
    again = durable("teardown", "--yes", "--prefix", config.prefix, "--endpoint-url", moto_endpoint)
    assert f"nothing to remove for prefix {config.prefix}" in again.stderr

    missing = durable("dlq", "--prefix", config.prefix, "--endpoint-url", moto_endpoint, ok=False)
    assert missing.stderr.count("\n") == 1
    assert f"queue {config.dead_letter_queue} does not exist" in missing.stderr
