"""Where the AWS world's resources are: from ``.durable/aws.json``, the URL and the environment.

``durable bootstrap`` writes ``.durable/aws.json``, one entry per prefix it made, the last one
the default; ``aws://`` reads the default and ``aws://?prefix=shop`` the entry of ``shop``. Query
parameters of the URL override the file (``aws://?prefix=shop&region=eu-west-1``), and
``AWS_ENDPOINT_URL`` points every client at another endpoint (a local moto server, LocalStack).

Bucket names are global across accounts, so the bucket bootstrap makes is
``<prefix>-payloads-<account id>``. A URL that names no bucket, on a host without the file,
means that name: the bucket is ``<prefix>-payloads-{account}`` until the world asks STS for the
account id, at its first use of S3.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from durable._errors import ConfigurationError

CONFIG_PATH = Path(".durable") / "aws.json"
"""Where ``durable bootstrap`` writes what it made, relative to the working directory."""

DEFAULT_PREFIX = "durable"
ACCOUNT = "{account}"
"""Stands for the account id of the credentials in use in a bucket name (resolved at first use)."""


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
    """The S3 bucket for payloads over ``payload_threshold``. ``{account}`` in the name stands for
    the account id; :func:`load_config` gives ``<prefix>-payloads-{account}`` (what bootstrap
    makes) when neither the URL nor the file names one. Built in code, it defaults to
    ``<prefix>-payloads``, used as it is."""
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
    source: str = field(default="", compare=False, repr=False)
    """Where the prefix and settings came from, for error messages (not a setting: never
    written to ``.durable/aws.json`` or a URL)."""

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
        return {k: v for k, v in asdict(self).items() if k in _FIELDS}


_FIELDS = {f.name: f for f in fields(AwsConfig) if f.name != "source"}


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


def load_config(
    url: str = "aws://", path: Path | None = None, *, read_file: bool = True
) -> AwsConfig:
    """Build the configuration for an ``aws://`` URL.

    Order (later wins): defaults, the entry of ``.durable/aws.json`` (or ``path``, or
    ``?config=FILE``) for the URL's prefix (the file's default prefix when the URL names none),
    ``AWS_REGION``/``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` when the file names none, then
    the URL's query parameters. With no bucket named, the bucket is bootstrap's
    ``<prefix>-payloads-{account}``. ``read_file=False`` leaves the file out.
    """
    parts = urlsplit(url)
    if parts.scheme != "aws":
        raise ConfigurationError(f"not an aws world URL: {url!r} (expected aws://...)")
    if parts.netloc or parts.path.strip("/"):
        # aws://shop reads like a prefix, but only the query names one.
        name = (parts.netloc + parts.path).strip("/")
        raise ConfigurationError(
            f"{url!r} names {name!r} where aws:// takes nothing: the prefix goes in the query, "
            f"aws://?prefix={name}"
        )
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(_FIELDS) - {"config"})
    if unknown:
        raise ConfigurationError(
            f"unknown aws world setting(s) {', '.join(unknown)} in {url!r}; known: "
            + ", ".join(sorted(_FIELDS))
        )
    file = Path(query.pop("config")) if "config" in query else (path or CONFIG_PATH)
    default, entries = _read(file) if read_file else (None, {})
    source = (
        _source(file, query.get("prefix"), default, entries)
        if read_file
        else f"prefix {query.get('prefix') or DEFAULT_PREFIX}, named by the URL ({file} unread)"
    )
    values = dict(entries.get(query.get("prefix") or default or "", {}))
    if not values and default in entries:
        # A prefix the file does not hold names other resources; where they are carries over.
        values = {k: v for k, v in entries[default].items() if k in ("region", "endpoint_url")}
    values = {k: v for k, v in values.items() if k in _FIELDS}
    if not values.get("region"):
        values["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if os.environ.get("AWS_ENDPOINT_URL"):
        values["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    values.update(query)
    if not values.get("bucket"):
        values["bucket"] = account_bucket(str(values.get("prefix") or DEFAULT_PREFIX))
    return AwsConfig(**{k: _coerce(k, v) for k, v in values.items()}, source=source)


def _source(
    file: Path, named: str | None, default: str | None, entries: dict[str, dict[str, Any]]
) -> str:
    """Where the prefix came from, in words: the file's entry, the URL, or the default."""
    where = file.resolve()
    if named is None and default is not None:
        return f"prefix {default}: the default of {where}"
    if named is None:
        return (
            f"prefix {DEFAULT_PREFIX}: the default, since there is no {file} in "
            f"{Path.cwd()} (run durable bootstrap there, or name the prefix: aws://?prefix=NAME)"
        )
    if named in entries:
        return f"prefix {named}: its settings from {where}"
    if entries:
        held = ", ".join(entries)
        return f"prefix {named}, named by the URL; {where} has no entry for it (only {held})"
    return f"prefix {named}, named by the URL; there is no {file} in {Path.cwd()}"


def check_endpoint(url: str | None) -> None:
    """Refuse an endpoint that is not an http(s) URL, naming the setting it came from.

    Raises:
        ConfigurationError: no scheme (``localhost:5055``), another one (``htp://``), no host.
    """
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    if os.environ.get("AWS_ENDPOINT_URL") == url:
        setting = "AWS_ENDPOINT_URL"
    else:
        setting = "the endpoint URL (--endpoint-url, aws://?endpoint_url=)"
    example = "http://" + (url.split("://", 1)[1] if "://" in url else url)
    raise ConfigurationError(
        f"{setting} is {url!r}, not an http:// or https:// URL: give the scheme and the host, "
        f"e.g. {example}"
    )


def missing_profile(exc: Exception) -> ConfigurationError:
    """The error for botocore's ``ProfileNotFound``: which profile, where it was named."""
    profile = getattr(exc, "kwargs", {}).get("profile")
    setting = next(
        (name for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE") if os.environ.get(name)),
        "the AWS profile setting",
    )
    return ConfigurationError(
        f"{setting} names the AWS profile {profile!r}, which is not in ~/.aws/config or "
        f"~/.aws/credentials: set {setting} to a profile that exists (`aws configure "
        "list-profiles` lists them), or unset it to use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        "or an attached role"
    )


def account_bucket(prefix: str) -> str:
    """The bucket bootstrap makes for ``prefix``, before the account id is known."""
    return f"{prefix}-payloads-{ACCOUNT}"


def resolve_bucket(bucket: str, account: str) -> str:
    """``bucket`` with ``{account}`` replaced by the account id."""
    return bucket.replace(ACCOUNT, account)


def url_defaults(prefix: str) -> AwsConfig:
    """What ``aws://?prefix=PREFIX`` means when nothing else names a resource."""
    return AwsConfig(prefix=prefix, bucket=account_bucket(prefix))


def config_url(config: AwsConfig) -> str:
    """An ``aws://`` URL naming every setting of ``config`` that differs from the defaults.

    Another process opening it finds the same resources without ``.durable/aws.json``.
    """
    defaults = url_defaults(config.prefix)
    query = {"prefix": config.prefix}
    for name in _FIELDS:
        value = getattr(config, name)
        if name != "prefix" and value is not None and value != getattr(defaults, name):
            query[name] = str(value)
    return "aws://?" + urlencode(query)


class UnreadableConfig(ConfigurationError):
    """``.durable/aws.json`` exists but holds no readable settings (``path``: the file)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path))


def _unreadable(file: Path, why: str) -> UnreadableConfig:
    return UnreadableConfig(
        f"cannot read {file} ({why}); `durable bootstrap --prefix NAME --region REGION` keeps "
        f"it aside as {file.name}.corrupt-<time> and writes a new one (the resources are "
        "untouched), and commands given --prefix and --region work meanwhile with "
        "aws://?prefix=NAME&region=REGION",
        file,
    )


def _read(file: Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The file's default prefix and its entries by prefix (none when there is no file)."""
    if not file.exists():
        return None, {}
    try:
        stored = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _unreadable(file, str(exc)) from exc
    if isinstance(stored, dict) and isinstance(stored.get("prefixes"), dict):
        entries = {str(k): v for k, v in stored["prefixes"].items() if isinstance(v, dict)}
        default = stored.get("default")
        return (default if default in entries else None), entries
    if isinstance(stored, dict) and isinstance(stored.get("prefix"), str):
        # One prefix's settings at the top level: what bootstrap wrote before several prefixes.
        return stored["prefix"], {stored["prefix"]: stored}
    raise _unreadable(file, 'no durable settings: expected a JSON object with "prefixes"')


def set_aside_unreadable(path: Path | None = None) -> Path | None:
    """Rename ``.durable/aws.json`` (or ``path``) aside if it cannot be read, so it is rewritten.

    Returns:
        Where the unreadable file is now, or ``None`` when it is readable or missing.
    """
    file = path or CONFIG_PATH
    try:
        _read(file)
    except UnreadableConfig:
        aside = file.with_name(f"{file.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        file.replace(aside)
        return aside
    return None


def _write(file: Path, default: str | None, entries: dict[str, dict[str, Any]]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a process reading it meanwhile sees the old or the new file.
    partial = file.with_name(file.name + ".tmp")
    document = {"default": default, "prefixes": entries}
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(file)


def save_config(config: AwsConfig, path: Path | None = None) -> list[str]:
    """Store ``config`` in ``.durable/aws.json`` (or ``path``) as its prefix's entry.

    The entry becomes the default (what ``aws://`` means); other prefixes' entries stay.

    Returns:
        The prefixes the file holds now, the default last.
    """
    file = path or CONFIG_PATH
    _, entries = _read(file)
    entries.pop(config.prefix, None)
    entries[config.prefix] = config.to_json()
    _write(file, config.prefix, entries)
    return list(entries)


def forget_config(prefix: str, path: Path | None = None) -> tuple[bool, str | None]:
    """Remove ``prefix``'s entry from ``.durable/aws.json`` (or ``path``).

    The most recently saved remaining entry becomes the default if ``prefix`` was; the file
    is removed with its last entry.

    Returns:
        Whether the file held ``prefix``, and the default prefix now (``None``: no file).
    """
    file = path or CONFIG_PATH
    try:
        default, entries = _read(file)
    except ConfigurationError:
        return False, None
    if entries.pop(prefix, None) is None:
        return False, default
    if not entries:
        file.unlink()
        return True, None
    if default == prefix or default is None:
        default = list(entries)[-1]
    _write(file, default, entries)
    return True, default


def with_prefix(config: AwsConfig, prefix: str) -> AwsConfig:
    """The same settings for another prefix (resource names rebuilt from it)."""
    return replace(
        config,
        prefix=prefix,
        table="",
        queue="",
        dead_letter_queue="",
        bucket=account_bucket(prefix),
        function="",
        role="",
    )
