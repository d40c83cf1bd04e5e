"""The boto3 clients of the AWS world, configured once: retries with backoff, a shared pool."""

from __future__ import annotations

from typing import Any

from durable._errors import ConfigurationError
from worlds.aws._config import CONFIG_PATH, AwsConfig
from worlds.aws._errors import MISSING_CODES, MISSING_NOTE, translate


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
        self._name_missing(self.dynamodb, f"table {config.table}", config)
        self._name_missing(self.sqs, f"queue {config.queue}", config)
        self._client = client
        self._account: str | None = None

    @staticmethod
    def _name_missing(client: Any, resource: str, config: AwsConfig) -> None:
        """Make a missing resource's error say which one, in which region, and for what prefix.

        AWS answers only "Requested resource not found"; the world uses one table and one queue
        per client, so the answer can only be about them. :func:`~worlds.aws._errors.translate`
        puts the note into its message.
        """
        region = client.meta.region_name
        endpoint = f" at {config.endpoint_url}" if config.endpoint_url else ""
        note = {
            "resource": resource,
            "where": f"region {region}{endpoint}",
            "source": config.source or f"prefix {config.prefix}",
            "prefix": config.prefix,
            "region": region,
        }

        def annotate(http_response: Any = None, parsed: Any = None, **_: Any) -> None:
            status = getattr(http_response, "status_code", 200)
            if status >= 300 and isinstance(parsed, dict):
                code = parsed.get("Error", {}).get("Code", "")
                if code in MISSING_CODES:
                    parsed[MISSING_NOTE] = note

        client.meta.events.register("after-call", annotate)

    @property
    def region(self) -> str:
        """The region the clients talk to (the configured one, or the SDK's own choice)."""
        return str(self.dynamodb.meta.region_name)

    def account(self) -> str:
        """The account id of the credentials in use, asked of STS once.

        GetCallerIdentity needs no permission, so any credentials that reach AWS can ask.

        Raises:
            WorldError: STS could not be asked.
        """
        if self._account is None:
            sts = self._client("sts")
            try:
                self._account = str(sts.get_caller_identity()["Account"])
            except Exception as exc:
                raise translate(exc, "asking STS for the account id (GetCallerIdentity)") from exc
            finally:
                sts.close()
        return self._account

    def close(self) -> None:
        """Close the clients' connection pools."""
        for client in (self.dynamodb, self.sqs, self.s3):
            close = getattr(client, "close", None)
            if close is not None:
                close()
