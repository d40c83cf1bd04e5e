"""The boto3 clients of the AWS world, configured once: retries with backoff, a shared pool."""

from __future__ import annotations

from typing import Any

from worlds.aws._config import AwsConfig


class Clients:
    """DynamoDB, SQS and S3 clients for one configuration (thread-safe, as boto3 clients are)."""

    def __init__(self, config: AwsConfig, max_attempts: int = 10) -> None:
        import boto3
        from botocore.config import Config

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
            return session.client(service, endpoint_url=endpoint, config=settings)

        self.dynamodb: Any = client("dynamodb")
        self.sqs: Any = client("sqs")
        self.s3: Any = client("s3")

    def close(self) -> None:
        """Close the clients' connection pools."""
        for client in (self.dynamodb, self.sqs, self.s3):
            close = getattr(client, "close", None)
            if close is not None:
                close()
