"""``durable bootstrap`` makes the table, queues, bucket and role; ``teardown`` removes them.

A second bootstrap changes nothing that is already as it should be. A resource of ours (tagged
``durable:prefix=<prefix>``) whose settings drifted is put back; a resource of the same name that
someone else made is used as it is and reported as ``foreign``. Teardown removes only resources
tagged with the prefix (and the function ``durable deploy`` made), and says what it left alone.

A prefix lives in one region. The table, queues, function and log group are per region, but
the bucket's name and the role are not: a second region under the same prefix would share them
(the role's policy rewritten for the second region, a teardown there deleting the first one's
payloads). So bootstrap refuses a prefix whose bucket or role serves another region, and
teardown leaves them alone when they do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from durable._errors import ConfigurationError
from worlds.aws._config import AwsConfig
from worlds.aws._infra import (
    CREATED,
    DLQ_RETENTION,
    FOREIGN,
    KEPT,
    LIFECYCLE_RULE_ID,
    POLICY_NAME,
    REMOVED,
    TAG_KEY,
    UNCHANGED,
    UPDATED,
    Change,
    Clients,
    aws_errors,
    bucket_name,
    check_prefix,
    error_code,
    is_missing,
    log_group,
    ownership,
    payload_prefix,
    tag_dict,
)
from worlds.aws._schema import BY_DUE, BY_STATUS, TTL_ATTRIBUTE, table_definition
from worlds.aws._template import trust_policy, worker_policy

_WAIT = {"Delay": 1, "MaxAttempts": 300}
_BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """What ``bootstrap`` made or found."""

    config: AwsConfig
    """The configuration to save: the final bucket name and the region in use."""
    changes: list[Change]
    """One entry per resource or setting, in the order they were handled."""


def bootstrap(config: AwsConfig, *, clients: Clients | None = None) -> Bootstrap:
    """Make (or check) every resource the AWS world needs.

    Raises:
        ConfigurationError: bad prefix, no credentials or region, or an existing table of the
            same name that cannot hold durable's items.
        WorldError: AWS refused a call.
    """
    check_prefix(config.prefix)
    clients = clients or Clients(config)
    config = replace(config, region=clients.region, bucket=bucket_name(config, clients))
    _refuse_another_region(clients, config)
    changes = _ensure_table(clients("dynamodb"), config)
    dlq_url, dlq_change = _ensure_queue(
        clients("sqs"),
        "dead-letter queue",
        config.dead_letter_queue,
        config.prefix,
        {"MessageRetentionPeriod": str(DLQ_RETENTION)},
    )
    dlq_arn = _queue_arn(clients("sqs"), dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": config.max_receives}
    queue_url, queue_change = _ensure_queue(
        clients("sqs"),
        "queue",
        config.queue,
        config.prefix,
        {"VisibilityTimeout": str(config.visibility_timeout), "RedrivePolicy": redrive},
    )
    queue_arn = _queue_arn(clients("sqs"), queue_url)
    changes += [dlq_change, queue_change, *_ensure_bucket(clients("s3"), config)]
    policy = _policy(config, clients.account(), queue_arn, dlq_arn)
    changes += _ensure_role(clients("iam"), config, policy)
    return Bootstrap(config, changes)


def _refuse_another_region(clients: Clients, config: AwsConfig) -> None:
    """Refuse before making anything when the prefix's bucket or role serve another region."""
    others = sorted(_home_regions(clients, config))
    if not others:
        return
    region = others[0]
    message = (
        f"prefix {config.prefix} is already bootstrapped in region {region} (its bucket "
        f"{config.bucket} and role {config.role} serve that region, and neither name is per "
        f"region); bootstrapping it in {config.region} too would share them, so a teardown in "
        f"one region would remove the other's. Use another --prefix for {config.region}"
    )
    suggestion = f"{config.prefix}-{config.region}"
    try:
        check_prefix(suggestion)
        message += f", e.g. --prefix {suggestion}"
    except ConfigurationError:
        pass
    raise ConfigurationError(message + f", or pass --region {region} to use the existing one")


def _home_regions(clients: Clients, config: AwsConfig) -> set[str]:
    """The other regions where the prefix lives and that its bucket or role serve.

    A region the bucket is in or the role's policy names counts while the prefix's table is
    still there: the runs its payloads belong to and its function are there too.
    """
    return {
        region
        for region in _served_regions(clients, config) - {config.region}
        if _table_in(clients.in_region("dynamodb", region), config)
    }


def _table_in(ddb: Any, config: AwsConfig) -> bool:
    table = _lookup_table(ddb, config.table)
    if table is None:
        return False
    with aws_errors(f"reading the tags of table {config.table}"):
        tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags")
    return ownership(tag_dict(tags), config.prefix) is None


def _served_regions(clients: Clients, config: AwsConfig) -> set[str]:
    """The regions this prefix's own bucket is in and its own role's policy serves."""
    found = set()
    s3, iam = clients("s3"), clients("iam")
    with aws_errors(f"looking up where bucket {config.bucket} is"):
        try:
            s3.head_bucket(Bucket=config.bucket)
        except Exception as exc:
            # Missing, or another account's (bootstrap says so when it gets to the bucket).
            if not (is_missing(exc) or error_code(exc) == "403"):
                raise
        else:
            if ownership(_bucket_tags(s3, config.bucket), config.prefix) is None:
                found.add(_bucket_region(s3, config.bucket))
    found |= _role_regions(iam, config)
    return found


def _bucket_region(s3: Any, name: str) -> str:
    location = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
    # us-east-1 has no location constraint; "EU" is what S3 once called eu-west-1.
    return str({None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location))


def _role_regions(iam: Any, config: AwsConfig) -> set[str]:
    """The regions the policy of the prefix's own role names resources in (none: no such role)."""
    name = config.role
    with aws_errors(f"reading role {name}"):
        try:
            tags = iam.list_role_tags(RoleName=name).get("Tags", [])
        except iam.exceptions.NoSuchEntityException:
            return set()
        if ownership(tag_dict(tags), config.prefix) is not None:
            return set()
        try:
            document = _document(
                iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)["PolicyDocument"]
            )
        except iam.exceptions.NoSuchEntityException:
            return set()
    regions = set()
    for statement in (document or {}).get("Statement", []):
        resources = statement.get("Resource", [])
        for arn in [resources] if isinstance(resources, str) else resources:
            parts = str(arn).split(":")
            if len(parts) > 3 and parts[2] in ("dynamodb", "sqs") and parts[3]:
                regions.add(parts[3])
    return regions


def _policy(config: AwsConfig, account: str, queue_arn: str, dlq_arn: str) -> dict[str, Any]:
    partition, region = queue_arn.split(":")[1], config.region
    table_arn = f"arn:{partition}:dynamodb:{region}:{account}:table/{config.table}"
    bucket_arn = f"arn:{partition}:s3:::{config.bucket}"
    logs_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{log_group(config)}"
    return worker_policy(
        table=table_arn,
        indexes=f"{table_arn}/index/*",
        queues=[queue_arn, dlq_arn],
        bucket=bucket_arn,
        objects=f"{bucket_arn}/*",
        log_group_arn=logs_arn,
        log_streams=f"{logs_arn}:*",
    )


def _ensure_table(ddb: Any, config: AwsConfig) -> list[Change]:
    name = config.table
    with aws_errors(f"creating table {name}"):
        try:
            table = ddb.describe_table(TableName=name)["Table"]
        except ddb.exceptions.ResourceNotFoundException:
            ddb.create_table(
                **table_definition(name), Tags=[{"Key": TAG_KEY, "Value": config.prefix}]
            )
            ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig=_WAIT)
            return [Change("table", name, CREATED), _ensure_ttl(ddb, name)]
        tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
        _check_table_layout(table)
        why = ownership(tag_dict(tags), config.prefix)
        if why is not None:
            return [Change("table", name, FOREIGN, f"{why}; used as it is")]
        return [Change("table", name, UNCHANGED), _ensure_ttl(ddb, name)]


def _check_table_layout(table: dict[str, Any]) -> None:
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
    indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    if keys != {"pk": "HASH", "sk": "RANGE"} or not {BY_STATUS, BY_DUE} <= indexes:
        raise ConfigurationError(
            f"table {table['TableName']} exists but is not laid out for durable (keys pk/sk, "
            f"indexes {BY_STATUS} and {BY_DUE}); choose another --prefix or delete the table"
        )


def _ensure_ttl(ddb: Any, table: str) -> Change:
    what = f"{table}.{TTL_ATTRIBUTE}"
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") == TTL_ATTRIBUTE:
            return Change("ttl", what, UNCHANGED)
        raise ConfigurationError(
            f"table {table} expires items by {ttl.get('AttributeName')!r}, durable needs "
            f"{TTL_ATTRIBUTE!r}; turn its time to live off and rerun durable bootstrap"
        )
    ddb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
    return Change("ttl", what, CREATED, "finished runs' items expire")


def _ensure_queue(
    sqs: Any, kind: str, name: str, prefix: str, settings: dict[str, Any]
) -> tuple[str, Change]:
    wanted = {
        **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in settings.items()},
        "SqsManagedSseEnabled": "true",
    }
    with aws_errors(f"creating {kind} {name}"):
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            url = sqs.create_queue(QueueName=name, Attributes=wanted, tags={TAG_KEY: prefix})
            return url["QueueUrl"], Change(kind, name, CREATED)
        why = ownership(tag_dict(sqs.list_queue_tags(QueueUrl=url).get("Tags")), prefix)
        if why is not None:
            return url, Change(kind, name, FOREIGN, f"{why}; used as it is")
        current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if current.get("KmsMasterKeyId"):
            del wanted["SqsManagedSseEnabled"]  # already encrypted with a KMS key
        drift = {k: v for k, v in wanted.items() if not _same_attribute(k, current.get(k), v)}
        if not drift:
            return url, Change(kind, name, UNCHANGED)
        sqs.set_queue_attributes(QueueUrl=url, Attributes=drift)
        return url, Change(kind, name, UPDATED, ", ".join(sorted(drift)))


def _same_attribute(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name == "RedrivePolicy":
        # SQS may return maxReceiveCount as a string and reorder the keys.
        have, want = json.loads(current), json.loads(wanted)
        return bool(
            have.get("deadLetterTargetArn") == want["deadLetterTargetArn"]
            and int(have.get("maxReceiveCount", 0)) == want["maxReceiveCount"]
        )
    return current.lower() == wanted.lower()


def _queue_arn(sqs: Any, url: str) -> str:
    with aws_errors(f"reading queue {url}"):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])


def _ensure_bucket(s3: Any, config: AwsConfig) -> list[Change]:
    name = config.bucket
    with aws_errors(f"creating bucket {name}"):
        try:
            s3.head_bucket(Bucket=name)
        except Exception as exc:
            if error_code(exc) == "403":
                raise ConfigurationError(
                    f"bucket {name} belongs to another account (bucket names are global); "
                    "choose another --prefix"
                ) from exc
            if not is_missing(exc):
                raise
            _create_bucket(s3, name, config)
            return [Change("bucket", name, CREATED), *_bucket_settings(s3, config)]
        why = ownership(_bucket_tags(s3, name), config.prefix)
        if why is not None:
            return [Change("bucket", name, FOREIGN, f"{why}; used as it is")]
        return [Change("bucket", name, UNCHANGED), *_bucket_settings(s3, config)]


def _create_bucket(s3: Any, name: str, config: AwsConfig) -> None:
    location: dict[str, Any] = {}
    if config.region and config.region != "us-east-1":
        # us-east-1 is the one region that rejects its own name as a location constraint.
        location["CreateBucketConfiguration"] = {"LocationConstraint": config.region}
    s3.create_bucket(Bucket=name, **location)
    s3.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig=_WAIT)
    s3.put_bucket_tagging(
        Bucket=name, Tagging={"TagSet": [{"Key": TAG_KEY, "Value": config.prefix}]}
    )


def _bucket_tags(s3: Any, name: str) -> dict[str, str]:
    try:
        return tag_dict(s3.get_bucket_tagging(Bucket=name)["TagSet"])
    except s3.exceptions.ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise


def _bucket_settings(s3: Any, config: AwsConfig) -> list[Change]:
    name = config.bucket
    changes = []
    block = _get_or_none(s3.get_public_access_block, name, "NoSuchPublicAccessBlockConfiguration")
    if (block or {}).get("PublicAccessBlockConfiguration") == _BLOCK_ALL:
        changes.append(Change("public access block", name, UNCHANGED))
    else:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=_BLOCK_ALL)
        changes.append(Change("public access block", name, CREATED if block is None else UPDATED))
    encryption = _get_or_none(
        s3.get_bucket_encryption, name, "ServerSideEncryptionConfigurationNotFoundError"
    )
    if encryption is not None:
        changes.append(Change("encryption", name, UNCHANGED))
    else:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        changes.append(Change("encryption", name, CREATED, "AES256"))
    changes.append(_ensure_lifecycle(s3, config))
    return changes


def _ensure_lifecycle(s3: Any, config: AwsConfig) -> Change:
    name = config.bucket
    days = config.retention_days + config.max_run_days
    wanted = lifecycle_rule(payload_prefix(config), days)
    detail = f"{payload_prefix(config)} expires after {days} days"
    found = _get_or_none(
        s3.get_bucket_lifecycle_configuration, name, "NoSuchLifecycleConfiguration"
    )
    rules = (found or {}).get("Rules", [])
    ours = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if ours and _same_rule(ours[0], wanted):
        return Change("lifecycle", name, UNCHANGED, detail)
    others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
    s3.put_bucket_lifecycle_configuration(
        Bucket=name, LifecycleConfiguration={"Rules": [*others, wanted]}
    )
    action = UPDATED if ours else CREATED
    return Change("lifecycle", name, action, detail)


def lifecycle_rule(prefix: str, days: int) -> dict[str, Any]:
    """The bucket's lifecycle rule: objects under ``prefix`` expire ``days`` days after writing."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def _same_rule(have: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(have.get(k) == want[k] for k in ("Filter", "Status", "Expiration"))


def _get_or_none(call: Any, bucket: str, missing: str) -> dict[str, Any] | None:
    try:
        return dict(call(Bucket=bucket))
    except Exception as exc:
        if error_code(exc) == missing:
            return None
        raise


def _ensure_role(iam: Any, config: AwsConfig, policy: dict[str, Any]) -> list[Change]:
    name = config.role
    with aws_errors(f"creating role {name}"):
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust_policy()),
                Description=f"Runs durable workflows of prefix {config.prefix}",
                Tags=[{"Key": TAG_KEY, "Value": config.prefix}],
            )
            iam.put_role_policy(
                RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy)
            )
            return [Change("role", name, CREATED), Change("policy", POLICY_NAME, CREATED)]
        tags = iam.list_role_tags(RoleName=name).get("Tags", [])
        why = ownership(tag_dict(tags), config.prefix)
        if why is not None:
            return [Change("role", name, FOREIGN, f"{why}; used as it is")]
        changes = [Change("role", name, UNCHANGED)]
        if _document(role["AssumeRolePolicyDocument"]) != trust_policy():
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy()))
            changes[0] = Change("role", name, UPDATED, "trust policy")
        try:
            current = iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)
        except iam.exceptions.NoSuchEntityException:
            current = None
        if current is not None and _document(current["PolicyDocument"]) == policy:
            return [*changes, Change("policy", POLICY_NAME, UNCHANGED)]
        iam.put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy)
        )
        return [*changes, Change("policy", POLICY_NAME, CREATED if current is None else UPDATED)]


def _document(value: Any) -> Any:
    # boto3 decodes IAM policy documents; other endpoints return them URL-encoded.
    if not isinstance(value, str):
        return value
    try:
        return json.loads(unquote(value))
    except ValueError:
        return None  # unreadable: differs from ours, so it is written again


def teardown(
    config: AwsConfig, *, keep_data: bool = False, clients: Clients | None = None
) -> list[Change]:
    """Remove what ``bootstrap`` and ``deploy`` made for ``config.prefix``; safe to run again.

    Only resources tagged ``durable:prefix=<prefix>`` (and not part of a CloudFormation stack)
    are removed; others of the same names are reported as ``kept``. Missing ones are skipped.

    Args:
        config: the resources' names.
        keep_data: keep the table and the bucket (the runs and their payloads).
        clients: clients to use (default: made from ``config``).

    Raises:
        WorldError: AWS refused a call; what was removed before it stays removed.
    """
    clients = clients or Clients(config)
    bucket = bucket_name(config, clients)
    config = replace(config, region=clients.region, bucket=bucket)
    # The bucket and the role are not per region: leave them to the region they serve.
    others = sorted(_home_regions(clients, config))
    shared = (
        f"serves prefix {config.prefix} in {', '.join(others)} too; "
        f"`durable teardown --region {others[0]}` removes it"
        if others
        else None
    )
    found = [
        *_remove_function(clients("lambda"), config),
        _remove_log_group(clients("logs"), config),
        _remove_role(clients("iam"), config, shared),
        _remove_queue(clients("sqs"), "queue", config.queue, config.prefix),
        _remove_queue(clients("sqs"), "dead-letter queue", config.dead_letter_queue, config.prefix),
    ]
    if keep_data:
        if _lookup_table(clients("dynamodb"), config.table) is not None:
            found.append(Change("table", config.table, KEPT, "--keep-data"))
        if _bucket_exists(clients("s3"), bucket):
            found.append(Change("bucket", bucket, KEPT, "--keep-data"))
    else:
        found += [
            _remove_bucket(clients("s3"), bucket, config.prefix, shared),
            _remove_table(clients("dynamodb"), config.table, config.prefix),
        ]
    return [change for change in found if change is not None]


def _remove_function(lam: Any, config: AwsConfig) -> list[Change]:
    name = config.function
    with aws_errors(f"removing function {name}"):
        try:
            function = lam.get_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            return []
        why = ownership(tag_dict(function.get("Tags")), config.prefix)
        if why is not None:
            return [Change("function", name, KEPT, why)]
        changes = []
        pages = lam.get_paginator("list_event_source_mappings").paginate(FunctionName=name)
        for mapping in (m for page in pages for m in page["EventSourceMappings"]):
            lam.delete_event_source_mapping(UUID=mapping["UUID"])
            source = mapping.get("EventSourceArn", "").rpartition(":")[2]
            changes.append(Change("event source mapping", mapping["UUID"], REMOVED, source))
        lam.delete_function(FunctionName=name)
        return [*changes, Change("function", name, REMOVED)]


def _remove_log_group(logs: Any, config: AwsConfig) -> Change | None:
    name = log_group(config)
    with aws_errors(f"removing log group {name}"):
        groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == name), None)
        if group is None:
            return None
        arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
        why = ownership(logs.list_tags_for_resource(resourceArn=arn).get("tags", {}), config.prefix)
        if why is not None:
            return Change("log group", name, KEPT, why)
        logs.delete_log_group(logGroupName=name)
        return Change("log group", name, REMOVED)


def _remove_role(iam: Any, config: AwsConfig, shared: str | None = None) -> Change | None:
    name = config.role
    with aws_errors(f"removing role {name}"):
        try:
            iam.get_role(RoleName=name)
        except iam.exceptions.NoSuchEntityException:
            return None
        why = ownership(tag_dict(iam.list_role_tags(RoleName=name).get("Tags")), config.prefix)
        why = why or shared
        if why is not None:
            return Change("role", name, KEPT, why)
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(
                RoleName=name, InstanceProfileName=profile["InstanceProfileName"]
            )
        iam.delete_role(RoleName=name)
        return Change("role", name, REMOVED)


def _remove_queue(sqs: Any, kind: str, name: str, prefix: str) -> Change | None:
    with aws_errors(f"removing {kind} {name}"):
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            return None
        why = ownership(tag_dict(sqs.list_queue_tags(QueueUrl=url).get("Tags")), prefix)
        if why is not None:
            return Change(kind, name, KEPT, why)
        sqs.delete_queue(QueueUrl=url)
        return Change(kind, name, REMOVED)


def _bucket_exists(s3: Any, name: str) -> bool:
    with aws_errors(f"looking up bucket {name}"):
        try:
            s3.head_bucket(Bucket=name)
        except Exception as exc:
            if is_missing(exc):
                return False
            raise
        return True


def _remove_bucket(s3: Any, name: str, prefix: str, shared: str | None = None) -> Change | None:
    if not _bucket_exists(s3, name):
        return None
    with aws_errors(f"removing bucket {name}"):
        why = ownership(_bucket_tags(s3, name), prefix) or shared
        if why is not None:
            return Change("bucket", name, KEPT, why)
        removed = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
            ]
            if objects:
                s3.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
                removed += len(objects)
        s3.delete_bucket(Bucket=name)
        return Change("bucket", name, REMOVED, f"{removed} object(s)" if removed else "")


def _lookup_table(ddb: Any, name: str) -> dict[str, Any] | None:
    with aws_errors(f"looking up table {name}"):
        try:
            return dict(ddb.describe_table(TableName=name)["Table"])
        except ddb.exceptions.ResourceNotFoundException:
            return None


def _remove_table(ddb: Any, name: str, prefix: str) -> Change | None:
    table = _lookup_table(ddb, name)
    if table is None:
        return None
    with aws_errors(f"removing table {name}"):
        tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags")
        why = ownership(tag_dict(tags), prefix)
        if why is not None:
            return Change("table", name, KEPT, why)
        ddb.delete_table(TableName=name)
        # A bootstrap right after must not find the table still being deleted.
        ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig=_WAIT)
        return Change("table", name, REMOVED)
