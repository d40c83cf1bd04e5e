"""The AWS world: DynamoDB for runs and event logs, SQS for work and wake-ups, S3 for payloads.

Importing this package registers the ``aws`` URL scheme: ``open_world("aws://")`` reads the
resources ``durable bootstrap`` wrote to ``.durable/aws.json``; ``aws://?prefix=NAME`` picks
another set, and ``AWS_ENDPOINT_URL`` points the clients at moto or LocalStack.
"""

from durable.world import register_world
from worlds.aws._config import AwsConfig, load_config
from worlds.aws._world import AwsWorld

__all__ = ["AwsConfig", "AwsWorld", "load_config"]

register_world("aws", AwsWorld)
