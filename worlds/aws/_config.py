"""Where the AWS world's resources are: from ``.durable/aws.json``, the URL and the environment.

``durable bootstrap`` writes ``.durable/aws.json``; ``aws://`` reads it. Query parameters of the
URL override it (``aws://?prefix=shop&region=eu-west-1``), and ``AWS_ENDPOINT_URL`` points every
client at another endpoint (a local moto server, LocalStack).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from durable._errors import ConfigurationError

CONFIG_PATH = Path(".durable") / "aws.json"
"""Where ``durable bootstrap`` writes what it made, relative to the working directory."""

DEFAULT_PREFIX = "durable"


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """The names and settings the AWS world needs; names default to ones built from ``prefix``."""

    prefix: str = DEFAULT_PREFIX
    """Prefix of every resource name (one prefix per application or environment)."""
    region: str | None = None
    """AWS region; ``None`` uses the SDK's own resolution (``AWS_REGION``, profile)."""
    endpoint_url: str | None = None
    """A non-AWS endpoint (moto, LocalStack); ``AWS_ENDPOINT_URL`` sets it too."""
    table: str = ""
    """The DynamoDB table (``<prefix>-runs``)."""
    queue: str = ""
    """The SQS queue of runs to execute and wake-ups (``<prefix>-runs``)."""
    dead_letter_queue: str = ""
    """Where messages go after ``max_receives`` failed receives (``<prefix>-runs-dlq``)."""
    bucket: str = ""
    """The S3 bucket for payloads over ``payload_threshold`` (``<prefix>-payloads``)."""
    payload_threshold: int = 64 * 1024
    """Payloads larger than this many bytes are stored in S3 and referenced from DynamoDB."""
    max_delay: int = 900
    """Longest SQS delay in seconds (SQS allows 900); longer waits are chained."""
    max_receives: int = 5
    """Receives of one message before SQS moves it to the dead-letter queue."""
    visibility_timeout: int = 900
    """Seconds a received message stays hidden; workers extend it while a run executes."""
    retention_days: int = 30
    """Days a finished run's items are kept before DynamoDB's TTL and S3's lifecycle remove them."""
    max_run_days: int = 365
    """Longest a run may live; its events expire ``retention_days`` after that at the latest."""
    receive_wait: float = 1.0
    """Seconds a worker's receive waits for a message (long polling) when it found no work, so
    idle workers cost few requests (0: return at once)."""
    sweep_interval: float = 15.0
    """How often a worker also looks in DynamoDB for due runs whose message was lost (0: always)."""
    function: str = ""
    """The Lambda function ``durable deploy`` creates (``<prefix>-worker``)."""
    role: str = ""
    """The IAM role the function runs as (``<prefix>-worker``)."""

    def __post_init__(self) -> None:
        defaults = {
            "table": f"{self.prefix}-runs",
            "queue": f"{self.prefix}-runs",
            "dead_letter_queue": f"{self.prefix}-runs-dlq",
            "bucket": f"{self.prefix}-payloads",
            "function": f"{self.prefix}-worker",
            "role": f"{self.prefix}-worker",
        }
        for name, value in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """The fields as written to ``.durable/aws.json``."""
        return asdict(self)


_FIELDS = {f.name: f for f in fields(AwsConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"aws world setting {name}={value!r} is not a number; give e.g. {name}=30"
        ) from None
    return None if value in ("", None) else str(value)


def load_config(url: str = "aws://", path: Path | None = None) -> AwsConfig:
    """Build the configuration for an ``aws://`` URL.

    Order (later wins): defaults, ``.durable/aws.json`` (or ``path``, or ``?config=FILE``),
    ``AWS_REGION``/``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` when the file names none,
    then the URL's query parameters.
    """
    parts = urlsplit(url)
    if parts.scheme != "aws":
        raise ConfigurationError(f"not an aws world URL: {url!r} (expected aws://...)")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(_FIELDS) - {"config"})
    if unknown:
        raise ConfigurationError(
            f"unknown aws world setting(s) {', '.join(unknown)} in {url!r}; known: "
            + ", ".join(sorted(_FIELDS))
        )
    file = Path(query.pop("config")) if "config" in query else (path or CONFIG_PATH)
    values: dict[str, Any] = {}
    if file.exists():
        try:
            stored = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read {file} ({exc}); rerun `durable bootstrap` to rewrite it"
            ) from exc
        if not isinstance(stored, dict):
            raise ConfigurationError(f"{file} does not hold a JSON object; rerun durable bootstrap")
        values.update({k: v for k, v in stored.items() if k in _FIELDS})
    if "prefix" in query and query["prefix"] != values.get("prefix"):
        # Another prefix names other resources: drop names the file derived from its prefix.
        values = {k: v for k, v in values.items() if k in ("region", "endpoint_url")}
    if not values.get("region"):
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if os.environ.get("AWS_ENDPOINT_URL"):
        values["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    values.update(query)
    return AwsConfig(**{k: _coerce(k, v) for k, v in values.items()})


def config_url(config: AwsConfig) -> str:
    """An ``aws://`` URL naming every setting of ``config`` that differs from the defaults.

    Another process opening it finds the same resources without ``.durable/aws.json``.
    """
    defaults = AwsConfig(prefix=config.prefix)
    query = {"prefix": config.prefix}
    for name in _FIELDS:
        value = getattr(config, name)
        if name != "prefix" and value is not None and value != getattr(defaults, name):
            query[name] = str(value)
    return "aws://?" + urlencode(query)


def save_config(config: AwsConfig, path: Path | None = None) -> Path:
    """Write ``config`` to ``.durable/aws.json`` (or ``path``); returns the file written."""
    file = path or CONFIG_PATH
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    return file


def with_prefix(config: AwsConfig, prefix: str) -> AwsConfig:
    """The same settings for another prefix (resource names rebuilt from it)."""
    return replace(
        config,
        prefix=prefix,
        table="",
        queue="",
        dead_letter_queue="",
        bucket="",
        function="",
        role="",
    )
