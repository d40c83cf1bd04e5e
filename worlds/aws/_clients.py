"""The boto3 clients of the AWS world, configured once: retries with backoff, a shared pool."""

from __future__ import annotations

from typing import Any

from durable._errors import ConfigurationError
from worlds.aws._config import CONFIG_PATH, AwsConfig


class Clients:
    """DynamoDB, SQS and S3 clients for one configuration (thread-safe, as boto3 clients are)."""

    def __init__(self, config: AwsConfig, max_attempts: int = 10) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        session = boto3.session.Session(region_name=config.region)
        # "standard" retries throttling and 5xx answers with exponential backoff and jitter.
        settings = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=64,
            connect_timeout=5,
            read_timeout=60,
        )
        endpoint = config.endpoint_url

        def client(service: str) -> Any:
            try:
                return session.client(service, endpoint_url=endpoint, config=settings)
            except NoRegionError:
                raise ConfigurationError(
                    "the AWS world has no region: run `durable bootstrap --region NAME` first "
                    f"(it writes {CONFIG_PATH} for aws:// to read), or set AWS_REGION, or use "
                    "aws://?region=NAME"
                ) from None

        self.dynamodb: Any = client("dynamodb")
        self.sqs: Any = client("sqs")
        self.s3: Any = client("s3")

    def close(self) -> None:
        """Close the clients' connection pools."""
        for client in (self.dynamodb, self.sqs, self.s3):
            close = getattr(client, "close", None)
            if close is not None:
                close()
