"""``durable deploy``: the user's modules and durable, as a Lambda function fed by the run queue.

The package holds the user's modules (paths or dotted names found from the working directory)
and the installed ``durable`` and ``worlds`` packages. boto3 is not packaged: Lambda's Python
runtime has it. The other dependencies (pydantic, aioboto3...) come from a layer (``--layer``) or
are pip-installed into the package when asked (``requirements=True``). A rerun updates the code
and settings of the same function and keeps exactly one mapping from the queue.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import durable
import worlds
from durable._errors import ConfigurationError
from worlds.aws._config import AwsConfig
from worlds.aws._infra import (
    CREATED,
    FOREIGN,
    HANDLER,
    REMOVED,
    TAG_KEY,
    UNCHANGED,
    UPDATED,
    Change,
    Clients,
    aws_errors,
    bucket_name,
    error_code,
    log_group,
    ownership,
    tag_dict,
    world_url,
)

RUNTIME = "python3.11"
_INLINE_LIMIT = 45 * 1024 * 1024
"""Lambda takes a zip of up to 50 MB in the call itself; a larger one goes through the bucket."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""A fixed time in the archive, so the same files give the same hash and deploy can skip them."""
_LOG_RETENTION = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
_WAIT = {"Delay": 1, "MaxAttempts": 300}
_NOT_PACKAGED = {"boto3", "botocore", "s3transfer"}
TIME_MARGIN = 30
"""Seconds the handler keeps in reserve before the function's timeout, when the timeout is long
enough (``DURABLE_TIME_MARGIN``); a shorter timeout gets a quarter of itself."""
MIN_TIMEOUT = 10
"""Shortest ``--timeout`` that leaves time to execute runs and hand them back before Lambda
stops the function."""


def time_margin(timeout: int) -> int:
    """The margin ``deploy`` gives a function of ``timeout`` seconds: 30 s, or a quarter of it."""
    return min(TIME_MARGIN, timeout // 4)


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """Settings of the Lambda function."""

    runtime: str = RUNTIME
    """Lambda's Python runtime (``python3.11``...)."""
    timeout: int = 300
    """Seconds one invocation may run; must be shorter than the queue's visibility timeout."""
    memory: int = 512
    """Megabytes of memory (Lambda scales the CPU with it)."""
    batch_size: int = 10
    """Messages per invocation (1 to 10)."""
    requirements: bool = False
    """pip-install durable's dependencies (except boto3) into the package."""
    layers: tuple[str, ...] = ()
    """ARNs of Lambda layers to attach (e.g. one providing the dependencies)."""
    time_margin: int | None = None
    """Seconds before the timeout at which the function hands runs still executing back
    (``DURABLE_TIME_MARGIN``); ``None``: 30, or a quarter of a timeout under two minutes."""


@dataclass(frozen=True, slots=True)
class Package:
    """The zip uploaded to Lambda."""

    data: bytes
    modules: tuple[str, ...]
    """The user's modules as dotted names, as the function imports them."""
    files: int

    @property
    def sha256(self) -> str:
        """The hash Lambda reports as ``CodeSha256``."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


@dataclass(frozen=True, slots=True)
class Deployment:
    """What ``deploy`` did."""

    function_arn: str
    package: Package
    changes: list[Change]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line the function logged."""

    timestamp: float
    stream: str
    message: str


def build_package(
    modules: Sequence[str],
    *,
    cwd: Path | None = None,
    requirements: bool = False,
    runtime: str = RUNTIME,
) -> Package:
    """Zip the user's ``modules`` with ``durable`` and ``worlds`` (and their deps if asked).

    Raises:
        ConfigurationError: a module cannot be found, or pip failed.
    """
    cwd = (cwd or Path.cwd()).resolve()
    if not modules:
        raise ConfigurationError("name the modules that define your workflows, e.g. app.flows")
    located = [_locate(spec, cwd) for spec in modules]
    buffer = io.BytesIO()
    added: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for _, path, base in located:
            _add(archive, path, base, added)
        for package in (durable, worlds):
            root = Path(package.__file__ or "").parent
            _add(archive, root, root.parent, added)
        if requirements:
            with tempfile.TemporaryDirectory(prefix="durable-deps-") as target:
                _pip_install(runtime_requirements(), Path(target), runtime)
                shutil.rmtree(Path(target) / "bin", ignore_errors=True)  # console scripts
                _add(archive, Path(target), Path(target), added)
    names = tuple(dict.fromkeys(name for name, _, _ in located))
    return Package(buffer.getvalue(), names, len(added))


def _locate(spec: str, cwd: Path) -> tuple[str, Path, Path]:
    """The dotted name of ``spec``, the file or package to zip, and where zip names start."""
    name = spec
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        path = (cwd / spec).resolve()
        if not path.exists():
            raise ConfigurationError(f"module {spec} not found (looked for {path})")
        try:
            relative = path.relative_to(cwd)
        except ValueError:
            raise ConfigurationError(
                f"module {spec} is outside the working directory {cwd}; run durable deploy "
                "from the folder your modules are imported from"
            ) from None
        name = ".".join(relative.with_suffix("").parts if path.is_file() else relative.parts)
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ConfigurationError(
            f"{spec!r} is not a module: give a dotted name (app.flows) or a path (app/flows.py)"
        )
    base = cwd
    top = cwd / parts[0]
    if not top.is_dir() and not top.with_suffix(".py").is_file():
        found = importlib.util.find_spec(parts[0])  # a top-level name is found, not imported
        if found is None or not found.has_location or found.origin is None:
            raise ConfigurationError(
                f"module {name} not found in {cwd} or on the Python path; give its path "
                "(app/flows.py) or run durable deploy from the folder it is imported from"
            )
        locations = found.submodule_search_locations
        top = Path(locations[0]) if locations else Path(found.origin)
        base = top.parent
    if top.is_dir():
        target = top.joinpath(*parts[1:])
        if not (target.with_suffix(".py").is_file() or target.is_dir()):
            raise ConfigurationError(f"module {name} not found: no {target}.py or {target}/")
    elif len(parts) > 1:
        raise ConfigurationError(f"module {name} not found: {top.name} is a module, not a package")
    return name, top if top.is_dir() else top.with_suffix(".py"), base


def _add(archive: zipfile.ZipFile, path: Path, base: Path, added: set[str]) -> None:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(base)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
            continue
        if file.suffix == ".pyc" or relative.as_posix() in added:
            continue
        info = zipfile.ZipInfo(relative.as_posix(), date_time=_ZIP_TIME)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, file.read_bytes())
        added.add(relative.as_posix())


def runtime_requirements() -> list[str]:
    """The dependencies durable-sdk declares (with the ``aws`` extra) except boto3, as pip specs."""
    try:
        declared = importlib.metadata.requires("durable-sdk") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    wanted = []
    for line in declared:
        spec, _, marker = line.partition(";")
        if "extra" in marker and "aws" not in marker:
            continue
        name = re.match(r"[A-Za-z0-9._-]*", spec.strip())
        if name and name.group(0).lower() not in _NOT_PACKAGED:
            wanted.append(spec.strip())
    return wanted


def _pip_install(requirements: list[str], target: Path, runtime: str) -> None:
    # Wheels for Lambda's platform, not this machine's (pydantic-core is compiled code).
    # aioboto3 pins its own botocore, so pip may still put one in: that one must stay.
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        *("--target", str(target), "--platform", "manylinux2014_x86_64"),
        *("--implementation", "cp", "--python-version", runtime.removeprefix("python")),
        "--only-binary=:all:",
        *requirements,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise ConfigurationError(
            f"pip could not install {', '.join(requirements)} for {runtime}: "
            f"{lines[-1] if lines else 'exit code ' + str(done.returncode)}; "
            "provide them in a layer (--layer ARN) instead"
        )


def deploy(
    config: AwsConfig,
    modules: Sequence[str],
    options: DeployOptions | None = None,
    *,
    cwd: Path | None = None,
    clients: Clients | None = None,
) -> Deployment:
    """Create or update the function that executes the runs of ``modules``.

    Raises:
        ConfigurationError: bad options, a module not found, bootstrap not run, or a function
            of the same name that durable did not make.
        WorldError: AWS refused a call.
    """
    options = options or DeployOptions()
    if options.timeout >= config.visibility_timeout:
        raise ConfigurationError(
            f"--timeout {options.timeout} must be shorter than the queue's visibility timeout "
            f"({config.visibility_timeout} s), or a message reappears while the function still "
            "works on it; lower --timeout or rerun bootstrap with a larger --visibility-timeout"
        )
    margin = _margin(options)
    package = build_package(
        modules, cwd=cwd, requirements=options.requirements, runtime=options.runtime
    )
    clients = clients or Clients(config)
    config = replace(config, region=clients.region, bucket=bucket_name(config, clients))
    role_arn, queue_arn = _bootstrapped(clients, config)
    changes = [_ensure_log_group(clients("logs"), config)]
    env = {
        "DURABLE_MODULES": ",".join(package.modules),
        "DURABLE_WORLD": world_url(config),
        "DURABLE_TIME_MARGIN": str(margin),
    }
    settings = {
        "Role": role_arn,
        "Handler": HANDLER,
        "Runtime": options.runtime,
        "Timeout": options.timeout,
        "MemorySize": options.memory,
        "Environment": {"Variables": env},
        "Layers": list(options.layers),
        "Description": f"durable worker, prefix {config.prefix}",
    }
    with aws_errors(f"deploying function {config.function}"):
        code = _upload(clients, config, package)
        arn, change = _ensure_function(clients("lambda"), config, code, package, settings)
        changes += [change, *_ensure_mapping(clients("lambda"), config, queue_arn, options)]
    return Deployment(arn, package, changes)


def _margin(options: DeployOptions) -> int:
    """The handler's time margin; refuses a timeout that leaves no time to execute runs."""
    timeout = options.timeout
    if timeout < MIN_TIMEOUT:
        raise ConfigurationError(
            f"--timeout {timeout} leaves no time to execute a run and hand it back before "
            f"Lambda stops the function; use --timeout {MIN_TIMEOUT} or more (300, the default, "
            "suits most workflows)"
        )
    if options.time_margin is None:
        return time_margin(timeout)
    if not 0 < options.time_margin < timeout:
        raise ConfigurationError(
            f"--time-margin {options.time_margin} must be more than 0 and less than --timeout "
            f"{timeout}: the function hands runs back that many seconds before its time runs "
            f"out, so it would execute nothing (leave it out for {time_margin(timeout)})"
        )
    return options.time_margin


def _bootstrapped(clients: Clients, config: AwsConfig) -> tuple[str, str]:
    iam, sqs = clients("iam"), clients("sqs")
    with aws_errors("looking up what durable bootstrap made"):
        try:
            role = iam.get_role(RoleName=config.role)["Role"]["Arn"]
            url = sqs.get_queue_url(QueueName=config.queue)["QueueUrl"]
        except (iam.exceptions.NoSuchEntityException, sqs.exceptions.QueueDoesNotExist):
            raise ConfigurationError(
                f"role {config.role} or queue {config.queue} does not exist; run "
                f"`durable bootstrap --prefix {config.prefix}` first"
            ) from None
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(role), str(arn["Attributes"]["QueueArn"])


def _ensure_log_group(logs: Any, config: AwsConfig) -> Change:
    # Made before Lambda makes it itself, so it is tagged (teardown removes it) and expires.
    name = log_group(config)
    days = next((d for d in _LOG_RETENTION if d >= config.retention_days), _LOG_RETENTION[-1])
    with aws_errors(f"creating log group {name}"):
        try:
            logs.create_log_group(logGroupName=name, tags={TAG_KEY: config.prefix})
            action = CREATED
        except logs.exceptions.ResourceAlreadyExistsException:
            groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            group = next(g for g in groups if g["logGroupName"] == name)
            arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
            tags = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
            why = ownership(tag_dict(tags), config.prefix)
            if why is not None:
                return Change("log group", name, FOREIGN, f"{why}; used as it is")
            if group.get("retentionInDays") == days:
                return Change("log group", name, UNCHANGED, f"lines kept {days} days")
            action = UPDATED
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        return Change("log group", name, action, f"lines kept {days} days")


def _upload(clients: Clients, config: AwsConfig, package: Package) -> dict[str, Any]:
    if len(package.data) <= _INLINE_LIMIT:
        return {"ZipFile": package.data}
    key = f"{config.prefix}/deploy/{config.function}.zip"
    clients("s3").put_object(Bucket=config.bucket, Key=key, Body=package.data)
    return {"S3Bucket": config.bucket, "S3Key": key}


def _ensure_function(
    lam: Any, config: AwsConfig, code: dict[str, Any], package: Package, settings: dict[str, Any]
) -> tuple[str, Change]:
    name = config.function
    size = f"{len(package.data) // 1024} KiB, {package.files} files"
    try:
        current = lam.get_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        created = _while_role_propagates(
            lambda: lam.create_function(
                FunctionName=name, Code=code, Tags={TAG_KEY: config.prefix}, **settings
            )
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=_WAIT)
        return str(created["FunctionArn"]), Change("function", name, CREATED, size)
    why = ownership(tag_dict(current.get("Tags")), config.prefix)
    if why is not None:
        raise ConfigurationError(
            f"function {name} {why}; durable deploy does not replace it: choose another "
            "--prefix or delete the function"
        )
    found = current["Configuration"]
    updated = []
    drift = [key for key, value in settings.items() if _setting(found, key) != value]
    if drift or found.get("CodeSha256") != package.sha256:
        # Lambda refuses a change while the previous one is still being applied.
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=_WAIT)
    if found.get("CodeSha256") != package.sha256:
        lam.update_function_code(FunctionName=name, **code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=_WAIT)
        updated.append(f"code ({size})")
    if drift:
        _while_role_propagates(
            lambda: lam.update_function_configuration(FunctionName=name, **settings)
        )
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=_WAIT)
        updated += [key.lower() for key in drift]
    action = UPDATED if updated else UNCHANGED
    return str(found["FunctionArn"]), Change("function", name, action, ", ".join(updated))


def _setting(configuration: dict[str, Any], key: str) -> Any:
    if key == "Environment":
        return {"Variables": configuration.get("Environment", {}).get("Variables", {})}
    if key == "Layers":
        return [layer["Arn"] for layer in configuration.get("Layers", [])]
    return configuration.get(key)


def _while_role_propagates(call: Callable[[], Any]) -> Any:
    # A new IAM role takes a few seconds before Lambda may assume it.
    for _ in range(15):
        try:
            return call()
        except Exception as exc:
            if error_code(exc) != "InvalidParameterValueException" or "assume" not in str(exc):
                raise
            time.sleep(2)
    return call()


def _ensure_mapping(
    lam: Any, config: AwsConfig, queue_arn: str, options: DeployOptions
) -> list[Change]:
    wanted = {"BatchSize": options.batch_size, "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    source = f"{config.queue} -> {config.function}"
    pages = lam.get_paginator("list_event_source_mappings").paginate(
        FunctionName=config.function, EventSourceArn=queue_arn
    )
    mappings = [m for page in pages for m in page["EventSourceMappings"]]
    if not mappings:
        made = lam.create_event_source_mapping(
            EventSourceArn=queue_arn, FunctionName=config.function, Enabled=True, **wanted
        )
        return [Change("event source mapping", made["UUID"], CREATED, source)]
    keep, *extra = mappings
    changes = []
    for mapping in extra:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        changes.append(Change("event source mapping", mapping["UUID"], REMOVED, "duplicate"))
    current = {key: keep.get(key) for key in wanted}
    if current == wanted and keep.get("State") not in ("Disabled", "Disabling"):
        return [*changes, Change("event source mapping", keep["UUID"], UNCHANGED, source)]
    lam.update_event_source_mapping(UUID=keep["UUID"], Enabled=True, **wanted)
    return [*changes, Change("event source mapping", keep["UUID"], UPDATED, source)]


def tail_logs(
    config: AwsConfig,
    *,
    since: float,
    follow: bool = False,
    pattern: str | None = None,
    poll: float = 2.0,
    clients: Clients | None = None,
) -> Iterator[LogLine]:
    """The function's log lines of the last ``since`` seconds, oldest first.

    Args:
        config: names the function (its log group is ``/aws/lambda/<function>``).
        since: how far back to start, in seconds.
        follow: keep waiting for new lines (every ``poll`` seconds) until the caller stops.
        pattern: a CloudWatch Logs filter pattern (e.g. ``ERROR``).
        poll: seconds between reads when following.
        clients: clients to use (default: made from ``config``).

    Raises:
        ConfigurationError: the log group does not exist yet.
        WorldError: CloudWatch Logs refused a call.
    """
    logs = (clients or Clients(config))("logs")
    name = log_group(config)
    start = int((time.time() - since) * 1000)
    seen: dict[str, int] = {}
    extra = {"filterPattern": pattern} if pattern else {}
    while True:
        with aws_errors(f"reading log group {name}"):
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=name, startTime=start, **extra
            )
            try:
                for page in pages:
                    for event in page.get("events", []):
                        if event["eventId"] in seen:
                            continue
                        seen[event["eventId"]] = event["timestamp"]
                        yield LogLine(
                            event["timestamp"] / 1000,
                            event.get("logStreamName", ""),
                            event["message"].rstrip("\n"),
                        )
            except logs.exceptions.ResourceNotFoundException:
                raise ConfigurationError(
                    f"log group {name} does not exist yet; deploy with `durable deploy MODULE` "
                    "(same --prefix) first"
                ) from None
        if not follow:
            return
        # startTime is inclusive: keep the ids of the newest millisecond to skip them next time.
        start = max(seen.values(), default=start)
        seen = {key: ts for key, ts in seen.items() if ts >= start}
        time.sleep(poll)
