"""The documents bootstrap writes: the role's IAM policies and a CloudFormation template.

``durable bootstrap --template`` prints the template so the same resources can be made by
CloudFormation, CDK or Terraform (which can import it). Running ``durable bootstrap`` afterwards
finds them, changes nothing that belongs to the stack, and writes ``.durable/aws.json``.
"""

from __future__ import annotations

from typing import Any

from worlds.aws._config import ACCOUNT, AwsConfig
from worlds.aws._infra import (
    DLQ_RETENTION,
    LIFECYCLE_RULE_ID,
    POLICY_NAME,
    SOURCE_TAG,
    TAG_KEY,
    check_prefix,
    log_group,
    payload_prefix,
)
from worlds.aws._schema import TTL_ATTRIBUTE, table_definition


def trust_policy() -> dict[str, Any]:
    """The role's trust policy: only Lambda may assume it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def worker_policy(
    *,
    table: Any,
    indexes: Any,
    queues: list[Any],
    bucket: Any,
    objects: Any,
    log_group_arn: Any,
    log_streams: Any,
) -> dict[str, Any]:
    """The least-privilege policy of the worker role.

    Each argument is an ARN, or a CloudFormation expression giving one (for the template).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunsTable",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:BatchGetItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:UpdateItem",
                ],
                "Resource": [table, indexes],
            },
            {
                "Sid": "RunsQueues",
                "Effect": "Allow",
                "Action": [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ],
                "Resource": queues,
            },
            {
                "Sid": "Payloads",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": objects,
            },
            {
                # Without ListBucket a missing object reads as 403 instead of 404.
                "Sid": "PayloadsList",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket,
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": "logs:CreateLogGroup",
                "Resource": log_group_arn,
            },
            {
                "Sid": "LogStreams",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": log_streams,
            },
        ],
    }


def template(config: AwsConfig) -> dict[str, Any]:
    """A CloudFormation template of the resources ``bootstrap`` makes, with the same settings.

    Raises:
        ConfigurationError: the prefix cannot name AWS resources.
    """
    check_prefix(config.prefix)
    tags = [
        {"Key": TAG_KEY, "Value": config.prefix},
        {"Key": SOURCE_TAG[0], "Value": SOURCE_TAG[1]},
    ]
    bucket: Any = config.bucket
    if ACCOUNT in config.bucket:
        bucket = {"Fn::Sub": config.bucket.replace(ACCOUNT, "${AWS::AccountId}")}
    logs_arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + log_group(
        config
    )
    policy = worker_policy(
        table={"Fn::GetAtt": ["Table", "Arn"]},
        indexes={"Fn::Sub": "${Table.Arn}/index/*"},
        queues=[{"Fn::GetAtt": ["Queue", "Arn"]}, {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}],
        bucket={"Fn::GetAtt": ["Bucket", "Arn"]},
        objects={"Fn::Sub": "${Bucket.Arn}/*"},
        log_group_arn={"Fn::Sub": logs_arn},
        log_streams={"Fn::Sub": logs_arn + ":*"},
    )
    table = {
        **table_definition(config.table),
        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        "Tags": tags,
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"durable AWS world, prefix {config.prefix} (from durable bootstrap --template). "
            "Deploy with --capabilities CAPABILITY_NAMED_IAM, then run durable bootstrap "
            f"--prefix {config.prefix} to write .durable/aws.json."
        ),
        "Resources": {
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": table},
            "DeadLetterQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": config.dead_letter_queue,
                    "MessageRetentionPeriod": DLQ_RETENTION,
                    "SqsManagedSseEnabled": True,
                    "Tags": tags,
                },
            },
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": config.queue,
                    "VisibilityTimeout": config.visibility_timeout,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                        "maxReceiveCount": config.max_receives,
                    },
                    "SqsManagedSseEnabled": True,
                    "Tags": tags,
                },
            },
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": bucket,
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "LifecycleConfiguration": {
                        "Rules": [
                            {
                                "Id": LIFECYCLE_RULE_ID,
                                "Status": "Enabled",
                                "Prefix": payload_prefix(config),
                                "ExpirationInDays": config.retention_days + config.max_run_days,
                            }
                        ]
                    },
                    "Tags": tags,
                },
            },
            "WorkerRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": config.role,
                    "Description": f"Runs durable workflows of prefix {config.prefix}",
                    "AssumeRolePolicyDocument": trust_policy(),
                    "Policies": [{"PolicyName": POLICY_NAME, "PolicyDocument": policy}],
                    "Tags": tags,
                },
            },
        },
        "Outputs": {
            "TableName": {"Value": {"Ref": "Table"}},
            "QueueUrl": {"Value": {"Ref": "Queue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "BucketName": {"Value": {"Ref": "Bucket"}},
            "RoleArn": {"Value": {"Fn::GetAtt": ["WorkerRole", "Arn"]}},
        },
    }
