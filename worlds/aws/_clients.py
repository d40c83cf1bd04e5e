"""The boto3 clients of the AWS world, configured once: retries with backoff, a shared pool.

Throttling and 5xx answers are retried up to 10 times with backoff (AWS asks for that). An
endpoint that cannot be connected to at all (a wrong AWS_ENDPOINT_URL, no network) is tried
only 3 times, a few seconds in all: a command says so at once, and a worker's loop logs it and
keeps trying, instead of both staying silent through a minute of backoff.
"""

from __future__ import annotations

import logging
from typing import Any

from durable._errors import ConfigurationError
from worlds.aws._config import CONFIG_PATH, AwsConfig, check_endpoint, missing_profile
from worlds.aws._errors import MISSING_CODES, MISSING_NOTE, translate

CONNECT_TIMEOUT = 3
"""Seconds to wait for a connection (AWS's endpoints answer in milliseconds)."""
CONNECT_ATTEMPTS = 3
"""Attempts of a call whose connection failed before the failure is raised."""


def quiet_botocore() -> None:
    """Drop botocore's "Found credentials in environment variables." line (INFO, each start)."""
    credentials = logging.getLogger("botocore.credentials")
    if credentials.level == logging.NOTSET:
        credentials.setLevel(logging.WARNING)


def give_up_connecting(client: Any, limit: int = CONNECT_ATTEMPTS) -> None:
    """Make ``client`` raise a failed connection after ``limit`` tries (not the usual 10).

    Throttling and 5xx answers keep the standard retries: only "cannot connect" is cut short.
    """
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    def needs_retry(attempts: int = 0, caught_exception: Any = None, **_: Any) -> None:
        failed = isinstance(caught_exception, (EndpointConnectionError, ConnectTimeoutError))
        if failed and attempts >= limit:
            raise caught_exception

    # Registered on the retry handler's own event, ahead of it: it runs first and may stop it.
    event = f"needs-retry.{client.meta.service_model.service_id.hyphenize()}"
    client.meta.events.register_first(event, needs_retry)


class Clients:
    """DynamoDB, SQS and S3 clients for one configuration (thread-safe, as boto3 clients are)."""

    def __init__(self, config: AwsConfig, max_attempts: int = 10) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError, ProfileNotFound

        check_endpoint(config.endpoint_url)
        quiet_botocore()
        try:
            session = boto3.session.Session(region_name=config.region)
        except ProfileNotFound as exc:
            raise missing_profile(exc) from None
        # "standard" retries throttling and 5xx answers with exponential backoff and jitter.
        settings = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=64,
            connect_timeout=CONNECT_TIMEOUT,
            # Above SQS's longest receive wait (20 s), which holds the connection meanwhile.
            read_timeout=60,
        )
        endpoint = config.endpoint_url

        def client(service: str) -> Any:
            try:
                return session.client(service, endpoint_url=endpoint, config=settings)
            except ProfileNotFound as exc:
                raise missing_profile(exc) from None
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
        for made in (self.dynamodb, self.sqs, self.s3):
            give_up_connecting(made)
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
