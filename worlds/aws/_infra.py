"""What the infrastructure commands share (clients, errors, tags, names), plus outputs and the DLQ.

The commands are plain functions over boto3 clients: ``bootstrap`` and ``teardown`` in
``_bootstrap``, ``deploy`` and ``tail_logs`` in ``_deploy``, the CloudFormation template and the
role's policies in ``_template``, ``outputs``, ``dead_letters`` and ``redrive`` here. Every
resource they make carries the tag ``durable:prefix=<prefix>``; teardown deletes only resources
carrying it, so a resource someone else made under the same name is left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlencode

from durable._errors import ConfigurationError, WorldError
from worlds.aws._clients import quiet_botocore
from worlds.aws._config import (
    ACCOUNT,
    AwsConfig,
    check_endpoint,
    missing_profile,
    resolve_bucket,
    url_defaults,
)

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError("the AWS commands need boto3: pip install 'durable-sdk[aws]'") from exc

TAG_KEY = "durable:prefix"
"""The tag every resource made by bootstrap and deploy carries (value: the prefix)."""
STACK_TAG = "aws:cloudformation:stack-name"
"""CloudFormation's own tag: such resources belong to a stack and are never changed here."""
SOURCE_TAG = ("durable:source", "template")
"""The template's resources carry this too: not every service gets CloudFormation's tag."""
LIFECYCLE_RULE_ID = "durable-expire-payloads"
DLQ_RETENTION = 14 * 24 * 3600
"""Seconds the dead-letter queue keeps messages (the SQS maximum), so they can be looked at."""
POLICY_NAME = "durable-worker"
HANDLER = "durable.aws.handler"

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
FOREIGN = "foreign"
"""Exists but was not made by durable (or belongs to a CloudFormation stack): left as it is."""
REMOVED = "removed"
KEPT = "kept"

_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,39}[a-z0-9])?")

_HINTS = {
    "AccessDenied": "the credentials in use lack this permission",
    "AccessDeniedException": "the credentials in use lack this permission",
    "UnrecognizedClientException": "the credentials are not valid for this endpoint",
    "InvalidClientTokenId": "the credentials are not valid for this endpoint",
    "ExpiredToken": "the credentials have expired; refresh them",
    "AWS.SimpleQueueService.QueueDeletedRecently": (
        "SQS needs 60 seconds after deleting a queue before one of the same name can be made"
    ),
    "BucketAlreadyExists": "bucket names are global: choose another --prefix",
}


@dataclass(frozen=True, slots=True)
class Change:
    """What one command did to one resource."""

    resource: str
    """Kind of resource: ``table``, ``queue``, ``bucket``, ``role``, ``function``..."""
    name: str
    """Its name (or ARN where it has no name)."""
    action: str
    """``created``, ``updated``, ``unchanged``, ``foreign``, ``removed`` or ``kept``."""
    detail: str = ""
    """Why, or what changed, in a few words."""

    def to_json(self) -> dict[str, str]:
        """The change as a JSON object."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Clients:
    """boto3 clients for one configuration, each made once."""

    def __init__(self, config: AwsConfig, session: Any | None = None) -> None:
        """Make clients for ``config`` from ``session`` (default: a new boto3 session)."""
        self.config = config
        check_endpoint(config.endpoint_url)
        quiet_botocore()
        with aws_errors("reading the AWS settings"):
            self._session = session or boto3.session.Session(region_name=config.region)
        self._made: dict[str, Any] = {}
        self._account: str | None = None

    def __call__(self, service: str) -> Any:
        """The client of ``service`` (``"dynamodb"``, ``"sqs"``...)."""
        return self.in_region(service, self.config.region or self._session.region_name)

    def in_region(self, service: str, region: str | None) -> Any:
        """The client of ``service`` in ``region`` (another region than the configured one)."""
        key = f"{service}@{region}"
        if key not in self._made:
            with aws_errors(f"connecting to {service}"):
                self._made[key] = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.config.endpoint_url,
                    config=BotoConfig(
                        retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10
                    ),
                )
        return self._made[key]

    @property
    def region(self) -> str:
        """The region the clients talk to.

        Raises:
            ConfigurationError: none is configured.
        """
        region = self.config.region or self._session.region_name
        if not region:
            raise ConfigurationError("no AWS region: pass --region or set AWS_REGION")
        return str(region)

    def account(self) -> str:
        """The account id of the credentials in use (asked once)."""
        if self._account is None:
            with aws_errors("looking up the account (sts get-caller-identity)"):
                self._account = str(self("sts").get_caller_identity()["Account"])
        return self._account


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn boto3's errors into one-line durable errors that say what failed and what to do.

    Raises:
        ConfigurationError: no credentials or no region.
        WorldError: the service refused or could not be reached.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        hint = _HINTS.get(code)
        raise WorldError(
            f"{action} failed: {code}: {message}" + (f" ({hint})" if hint else "")
        ) from exc
    except NoCredentialsError as exc:
        raise ConfigurationError(
            f"{action}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        ) from exc
    except NoRegionError as exc:
        raise ConfigurationError(
            f"{action}: no AWS region; pass --region or set AWS_REGION"
        ) from exc
    except ProfileNotFound as exc:
        raise missing_profile(exc) from exc
    except EndpointConnectionError as exc:
        raise WorldError(
            f"{action}: cannot reach {exc.kwargs.get('endpoint_url')}; check --endpoint-url "
            "(or AWS_ENDPOINT_URL) and the network",
            transient=True,
        ) from exc
    except BotoCoreError as exc:
        raise WorldError(f"{action} failed: {exc}") from exc


def error_code(exc: BaseException) -> str:
    """The service's error code of a ``ClientError`` (``""`` for other exceptions)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_missing(exc: BaseException, *codes: str) -> bool:
    """Whether ``exc`` says the resource does not exist (one of ``codes``, or HTTP 404)."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in codes or status == 404


def check_prefix(prefix: str) -> None:
    """Reject a prefix that would make invalid resource names.

    Raises:
        ConfigurationError: the prefix is not 1-41 lower-case letters, digits and dashes.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"prefix {prefix!r} cannot name AWS resources: use 1-41 lower-case letters, digits "
            "and dashes, starting and ending with a letter or digit (e.g. --prefix shop-prod)"
        )


def tag_dict(tags: Any) -> dict[str, str]:
    """Tags as a dict, from any of the shapes AWS services return them in."""
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t["Key"]): str(t["Value"]) for t in tags or ()}


def ownership(tags: Mapping[str, str], prefix: str) -> str | None:
    """Why a resource is not ours to change, or ``None`` when it is.

    Ours means tagged ``durable:prefix=<prefix>`` and not part of a CloudFormation stack (a
    stack made from ``durable bootstrap --template`` is changed through the stack).
    """
    if STACK_TAG in tags:
        return f"belongs to CloudFormation stack {tags[STACK_TAG]}"
    if tags.get(SOURCE_TAG[0]) == SOURCE_TAG[1]:
        return "belongs to a stack made from durable bootstrap --template"
    owner = tags.get(TAG_KEY)
    if owner == prefix:
        return None
    if owner is None:
        return f"has no {TAG_KEY} tag, so durable did not make it"
    return f"was made for prefix {owner!r}"


def bucket_name(config: AwsConfig, clients: Clients) -> str:
    """The payload bucket's real name: ``{account}`` in it replaced by the account id.

    ``aws://`` with no bucket named means ``<prefix>-payloads-{account}``: bucket names are
    global across accounts, so the account id keeps one account's name from taking another's.
    """
    if ACCOUNT in config.bucket:
        return resolve_bucket(config.bucket, clients.account())
    return config.bucket


def payload_prefix(config: AwsConfig) -> str:
    """Key prefix of the world's payload objects; the bucket's lifecycle rule expires them."""
    return f"{config.prefix}/payloads/"


def log_group(config: AwsConfig) -> str:
    """The CloudWatch Logs group Lambda writes the function's output to."""
    return f"/aws/lambda/{config.function}"


def world_url(config: AwsConfig) -> str:
    """The ``aws://`` URL that finds these resources without ``.durable/aws.json``.

    Only the prefix, the region and settings that differ from the prefix's defaults are
    written; the endpoint is left out since a deployed function reaches AWS directly.
    """
    defaults = url_defaults(config.prefix)
    query: dict[str, Any] = {"prefix": config.prefix}
    for f in fields(AwsConfig):
        if f.name in ("prefix", "endpoint_url", "source"):
            continue
        value = getattr(config, f.name)
        if value is not None and value != getattr(defaults, f.name):
            query[f.name] = value
    return "aws://?" + urlencode(query)


def outputs(config: AwsConfig, *, clients: Clients | None = None) -> dict[str, Any]:
    """Names, ARNs and URLs of the resources as they exist now (``None``: missing).

    Raises:
        WorldError: AWS refused a call.
    """
    clients = clients or Clients(config)
    bucket = bucket_name(config, clients)
    found: dict[str, Any] = {
        "prefix": config.prefix,
        "region": clients.region,
        "endpoint_url": config.endpoint_url,
        "world_url": world_url(replace(config, region=clients.region, bucket=bucket)),
    }
    with aws_errors("reading the resources"):
        table = _lookup(lambda: clients("dynamodb").describe_table(TableName=config.table))
        found.update(table=config.table, table_arn=table and table["Table"]["TableArn"])
        for key, name in (("queue", config.queue), ("dead_letter_queue", config.dead_letter_queue)):
            url, arn = _queue(clients("sqs"), name)
            found.update({key: name, f"{key}_url": url, f"{key}_arn": arn})
        exists = _lookup(lambda: clients("s3").head_bucket(Bucket=bucket))
        found.update(bucket=bucket, bucket_exists=exists is not None)
        role = _lookup(lambda: clients("iam").get_role(RoleName=config.role))
        found.update(role=config.role, role_arn=role and role["Role"]["Arn"])
        function = _lookup(lambda: clients("lambda").get_function(FunctionName=config.function))
        found.update(
            function=config.function,
            function_arn=function and function["Configuration"]["FunctionArn"],
            log_group=log_group(config),
        )
    return found


def _queue(sqs: Any, name: str) -> tuple[str | None, str | None]:
    found = _lookup(lambda: sqs.get_queue_url(QueueName=name))
    if found is None:
        return None, None
    attributes = sqs.get_queue_attributes(QueueUrl=found["QueueUrl"], AttributeNames=["QueueArn"])
    return str(found["QueueUrl"]), str(attributes["Attributes"]["QueueArn"])


_MISSING = ("ResourceNotFoundException", "NoSuchEntity", "NoSuchBucket", "QueueDoesNotExist")


def _lookup(call: Any) -> Any:
    try:
        return call()
    except ClientError as exc:
        if is_missing(exc, *_MISSING) or "NonExistentQueue" in error_code(exc):
            return None
        raise


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message SQS moved to the dead-letter queue after ``max_receives`` failed receives."""

    message_id: str
    run: str | None
    """The run the message was about (``None``: the body is not a durable message)."""
    kind: str | None
    """``start``, ``wake``, ``watch`` or ``hook``."""
    at: float | None
    """When the message was due (epoch seconds), from its body."""
    sent: float
    """When it was first sent (epoch seconds)."""
    receives: int
    """How often it was received before this look (approximate, as SQS counts)."""
    body: str


_PEEK = 60
"""Seconds a looked-at message stays hidden, so one look does not see it twice."""


def dead_letters(
    config: AwsConfig, *, limit: int = 1000, wait: int = 1, clients: Clients | None = None
) -> list[DeadLetter]:
    """The messages in the dead-letter queue, left in it.

    Args:
        config: where the queues are.
        limit: look at no more than this many messages.
        wait: seconds each receive waits (SQS's long polling asks every server, so none is
            missed; 0 can miss messages in a nearly empty queue).
        clients: clients to use (default: made from ``config``).

    Raises:
        ConfigurationError: the dead-letter queue does not exist.
        WorldError: SQS refused a call.
    """
    sqs = (clients or Clients(config))("sqs")
    with aws_errors(f"reading dead-letter queue {config.dead_letter_queue}"):
        url = _queue_url(sqs, config.dead_letter_queue)
        messages = _receive_all(sqs, url, limit, wait)
        _release(sqs, url, messages)
    return [_dead_letter(m) for m in messages]


def redrive(
    config: AwsConfig,
    *,
    runs: frozenset[str] = frozenset(),
    limit: int = 1000,
    wait: int = 1,
    clients: Clients | None = None,
) -> list[DeadLetter]:
    """Move messages from the dead-letter queue back to the queue; returns those moved.

    Each message is sent before it is deleted, so a failure in between leaves a copy in both
    queues rather than none (a second wake-up of a run is harmless).

    Args:
        config: where the queues are.
        runs: only messages about these runs (default: all).
        limit: move no more than this many messages.
        wait: seconds each receive waits (see ``dead_letters``).
        clients: clients to use (default: made from ``config``).

    Raises:
        ConfigurationError: a queue does not exist.
        WorldError: SQS refused a call; messages not moved stay in the dead-letter queue.
    """
    sqs = (clients or Clients(config))("sqs")
    with aws_errors(f"moving messages from {config.dead_letter_queue} to {config.queue}"):
        dlq_url = _queue_url(sqs, config.dead_letter_queue)
        queue_url = _queue_url(sqs, config.queue)
        messages = _receive_all(sqs, dlq_url, limit, wait)
        chosen = [m for m in messages if not runs or _dead_letter(m).run in runs]
        moved: list[dict[str, Any]] = []
        failures: list[str] = []
        for start in range(0, len(chosen), 10):
            batch = {str(i): m for i, m in enumerate(chosen[start : start + 10])}
            sent = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": i, **_resend(m)} for i, m in batch.items()],
            )
            failures += [f"{f.get('Code')}: {f.get('Message')}" for f in sent.get("Failed", [])]
            done = [batch[s["Id"]] for s in sent.get("Successful", [])]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            moved += done
        gone = {m["MessageId"] for m in moved}
        _release(sqs, dlq_url, [m for m in messages if m["MessageId"] not in gone])
    if failures:
        raise WorldError(
            f"{len(failures)} message(s) could not be sent to {config.queue} and stay in "
            f"{config.dead_letter_queue}: {failures[0]}"
        )
    return [_dead_letter(m) for m in moved]


def _queue_url(sqs: Any, name: str) -> str:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        raise ConfigurationError(
            f"queue {name} does not exist; run `durable bootstrap` (with the same --prefix) "
            "or pass the --prefix it was made with"
        ) from None


def _receive_all(sqs: Any, url: str, limit: int, wait: int) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < limit:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(seen)),
            VisibilityTimeout=_PEEK,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        # The latest receipt handle is the one that still works.
        seen.update((m["MessageId"], m) for m in got)
        if not fresh:
            break
    return list(seen.values())


def _release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _resend(message: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": message["Body"]}
    attributes = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    if attributes:
        entry["MessageAttributes"] = attributes
    return entry


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    run, kind, at = body.get("run"), body.get("kind"), body.get("at")
    attributes = message.get("Attributes", {})
    return DeadLetter(
        message_id=message["MessageId"],
        run=run if isinstance(run, str) else None,
        kind=kind if isinstance(kind, str) else None,
        at=float(at) if isinstance(at, (int, float)) else None,
        sent=int(attributes.get("SentTimestamp", 0)) / 1000,
        # This look received it once more.
        receives=max(int(attributes.get("ApproximateReceiveCount", 1)) - 1, 0),
        body=message["Body"],
    )
