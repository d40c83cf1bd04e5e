"""Commands that make, deploy, look at and remove the AWS world's resources.

``bootstrap`` writes ``.durable/aws.json``; the other commands read it and take ``--prefix``,
``--region`` and ``--endpoint-url`` over it. boto3 is imported only when one of them runs, so
``durable`` works without the ``aws`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
from rich.table import Table
from rich.text import Text

from cli._common import echo_json, json_option, show, world_url
from cli._values import format_local, iso
from durable._durations import parse_duration

if TYPE_CHECKING:
    from worlds.aws._config import AwsConfig
    from worlds.aws._infra import Change, DeadLetter

__all__ = ["bootstrap", "deploy", "dlq", "logs", "outputs", "teardown"]

F = TypeVar("F", bound=Callable[..., Any])

_STYLES = {
    "created": "green",
    "updated": "yellow",
    "unchanged": "dim",
    "foreign": "magenta",
    "kept": "magenta",
    "removed": "red",
}


def aws_options(fn: F) -> F:
    """Add ``--prefix``, ``--region`` and ``--endpoint-url`` to a command."""
    options = [
        click.option(
            "--prefix",
            help=(
                "Prefix of every resource name (default: the one bootstrapped last, from "
                ".durable/aws.json, else durable)."
            ),
        ),
        click.option("--region", help="AWS region (default: .durable/aws.json, $AWS_REGION)."),
        click.option(
            "--endpoint-url",
            envvar="AWS_ENDPOINT_URL",
            help="Send every call to this endpoint (LocalStack, moto) [env: AWS_ENDPOINT_URL].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def aws_config(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    *,
    read_file: bool = True,
    **settings: int | None,
) -> AwsConfig:
    """The configuration: ``.durable/aws.json`` (or an ``aws://`` --world), then the options."""
    from worlds.aws._config import load_config

    url = world_url(ctx)
    query = dict(parse_qsl(urlsplit(url).query)) if url.startswith("aws:") else {}
    given = {"prefix": prefix, "region": region, "endpoint_url": endpoint_url, **settings}
    query.update({key: str(value) for key, value in given.items() if value is not None})
    return load_config("aws://?" + urlencode(query), read_file=read_file)


def _recover_config() -> None:
    """Keep an unreadable ``.durable/aws.json`` aside, so bootstrap can write a new one."""
    from worlds.aws._config import CONFIG_PATH, set_aside_unreadable

    aside = set_aside_unreadable()
    if aside is not None:
        click.echo(
            f"warning: {CONFIG_PATH} could not be read; kept it as {aside} and writing a new "
            "one (other prefixes it named need their own durable bootstrap --prefix NAME to "
            "be noted again)",
            err=True,
        )


def changes_table(changes: Iterable[Change]) -> Table:
    """What a command did, one row per resource or setting."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RESOURCE", "NAME", "ACTION", "DETAIL"):
        table.add_column(column, no_wrap=column != "DETAIL")
    for change in changes:
        style = _STYLES.get(change.action, "")
        table.add_row(change.resource, change.name, Text(change.action, style), change.detail)
    return table


@click.command()
@aws_options
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    help="Days a finished run is kept before DynamoDB's TTL removes it [default: 30].",
)
@click.option(
    "--max-run-days",
    type=click.IntRange(min=1),
    help="Longest a run may live; payloads expire after this plus --retention-days [default: 365].",
)
@click.option(
    "--max-receives",
    type=click.IntRange(1, 1000),
    help="Receives of a message before SQS moves it to the dead-letter queue [default: 5].",
)
@click.option(
    "--visibility-timeout",
    type=click.IntRange(0, 43200),
    help="Seconds a received message stays hidden [default: 900].",
)
@click.option(
    "--template",
    is_flag=True,
    help="Print a CloudFormation template of the same resources instead of making them.",
)
@json_option
@click.pass_context
def bootstrap(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    retention_days: int | None,
    max_run_days: int | None,
    max_receives: int | None,
    visibility_timeout: int | None,
    template: bool,
    as_json: bool,
) -> None:
    """Make the AWS resources durable needs and note them in .durable/aws.json (safe to rerun).

    Makes a DynamoDB table (with TTL), an SQS queue with a dead-letter queue, an S3 bucket
    (public access blocked, encrypted, payloads expiring) and an IAM role for the worker
    function, each tagged durable:prefix=PREFIX. A rerun changes only what is missing or
    differs. .durable/aws.json keeps one entry per prefix; the one bootstrapped last is what
    aws:// and the other commands use, aws://?prefix=NAME and --prefix NAME the others. With
    --template, prints a CloudFormation template instead; deploy it, then run bootstrap to
    write .durable/aws.json.
    """
    if not template:
        _recover_config()
    config = aws_config(
        ctx,
        prefix,
        region,
        endpoint_url,
        retention_days=retention_days,
        max_run_days=max_run_days,
        max_receives=max_receives,
        visibility_timeout=visibility_timeout,
    )
    if template:
        from worlds.aws._template import template as cloudformation

        echo_json(cloudformation(config))
        return
    from worlds.aws._bootstrap import bootstrap as run
    from worlds.aws._config import CONFIG_PATH, save_config

    done = run(config)
    prefixes = save_config(done.config)
    if as_json:
        echo_json(
            {
                "config_file": str(CONFIG_PATH),
                "config": done.config.to_json(),
                "prefixes": prefixes,
                "changes": [change.to_json() for change in done.changes],
            }
        )
        return
    show(changes_table(done.changes))
    click.echo(_saved_message(done.config.prefix, prefixes), err=True)


def _saved_message(prefix: str, prefixes: list[str]) -> str:
    from worlds.aws._config import CONFIG_PATH

    others = [p for p in prefixes if p != prefix]
    said = f"wrote {CONFIG_PATH}: aws:// now finds these resources (prefix {prefix})"
    if others:
        # Bootstrapping another prefix moves the default; say how to reach the ones before.
        kept = ", ".join(f"aws://?prefix={p}" for p in others)
        said += f"; it still holds {kept} (or --prefix NAME)"
    return said + "; next: durable deploy MODULE"


@click.command()
@click.argument("modules", nargs=-1, required=True)
@aws_options
@click.option("--runtime", default="python3.11", show_default=True, help="Lambda's runtime.")
@click.option(
    "--timeout",
    default=300,
    show_default=True,
    type=click.IntRange(10, 900),
    help="Seconds one invocation may run (less than the queue's visibility timeout).",
)
@click.option(
    "--time-margin",
    type=click.IntRange(min=1),
    help=(
        "Seconds before --timeout at which the function hands unfinished runs back "
        "[default: 30, or a quarter of a --timeout under 120]."
    ),
)
@click.option(
    "--memory", default=512, show_default=True, type=click.IntRange(128, 10240), help="MB."
)
@click.option(
    "--batch-size",
    default=10,
    show_default=True,
    type=click.IntRange(1, 10),
    help="Messages per invocation.",
)
@click.option(
    "--requirements/--no-requirements",
    default=False,
    show_default=True,
    help="pip-install durable's dependencies (not boto3, which Lambda has) into the package.",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="ARN",
    help="Attach a Lambda layer, e.g. one providing the dependencies (repeatable).",
)
@json_option
@click.pass_context
def deploy(
    ctx: click.Context,
    modules: tuple[str, ...],
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    runtime: str,
    timeout: int,
    time_margin: int | None,
    memory: int,
    batch_size: int,
    requirements: bool,
    layers: tuple[str, ...],
    as_json: bool,
) -> None:
    """Package MODULES with durable into a Lambda function that the run queue feeds.

    MODULES are dotted names (app.flows) or paths (app/flows.py) under the working directory.
    A rerun updates the function's code and settings. Run durable bootstrap first.
    """
    from worlds.aws._deploy import DeployOptions, runtime_requirements
    from worlds.aws._deploy import deploy as run

    config = aws_config(ctx, prefix, region, endpoint_url)
    options = DeployOptions(
        runtime=runtime,
        timeout=timeout,
        time_margin=time_margin,
        memory=memory,
        batch_size=batch_size,
        requirements=requirements,
        layers=layers,
    )
    done = run(config, modules, options)
    if as_json:
        echo_json(
            {
                "function_arn": done.function_arn,
                "modules": list(done.package.modules),
                "package_bytes": len(done.package.data),
                "changes": [change.to_json() for change in done.changes],
            }
        )
        return
    show(changes_table(done.changes))
    click.echo(f"function {done.function_arn} runs {', '.join(done.package.modules)}", err=True)
    if not requirements and not layers:
        click.echo(
            "note: the package holds no third-party packages; the function also needs "
            f"{', '.join(runtime_requirements())}: pass --requirements or --layer ARN",
            err=True,
        )


@click.command()
@aws_options
@json_option
@click.pass_context
def outputs(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    as_json: bool,
) -> None:
    """Show the names, ARNs and URLs of the resources as they exist now."""
    from worlds.aws._infra import outputs as read

    found = read(aws_config(ctx, prefix, region, endpoint_url))
    if as_json:
        echo_json(found)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("OUTPUT", no_wrap=True)
    table.add_column("VALUE")
    for key, value in found.items():
        shown = Text("(missing)", "magenta") if value is None else Text(str(value))
        table.add_row(key, shown)
    show(table)


@click.command()
@aws_options
@click.option("--since", default="1h", show_default=True, help="How far back (30m, 2h, 1d).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--filter", "pattern", help="A CloudWatch Logs filter pattern, e.g. ERROR.")
@json_option
@click.pass_context
def logs(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    since: str,
    follow: bool,
    pattern: str | None,
    as_json: bool,
) -> None:
    """Print the deployed function's logs (CloudWatch Logs). --json prints one object a line."""
    from worlds.aws._deploy import tail_logs
    from worlds.aws._infra import log_group

    config = aws_config(ctx, prefix, region, endpoint_url)
    lines = tail_logs(config, since=parse_duration(since), follow=follow, pattern=pattern)
    printed = 0
    try:
        for line in lines:
            printed += 1
            if as_json:
                record = {"time": iso(line.timestamp), "stream": line.stream}
                click.echo(json.dumps({**record, "message": line.message}, ensure_ascii=False))
            else:
                click.echo(f"{format_local(line.timestamp)}  {line.message}")
    except KeyboardInterrupt:
        pass
    if not printed and not follow:
        click.echo(f"no lines in {log_group(config)} in the last {since}", err=True)


@click.command()
@aws_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--keep-data", is_flag=True, help="Keep the table and the bucket (runs, payloads).")
@json_option
@click.pass_context
def teardown(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    yes: bool,
    keep_data: bool,
    as_json: bool,
) -> None:
    """Remove what bootstrap and deploy made (only resources tagged with the prefix).

    Resources of the same names that durable did not make are left alone and listed as kept.
    The prefix's entry leaves .durable/aws.json; another bootstrapped prefix becomes the default.
    """
    from worlds.aws._bootstrap import teardown as run
    from worlds.aws._config import UnreadableConfig

    try:
        config = aws_config(ctx, prefix, region, endpoint_url)
    except UnreadableConfig as exc:
        if prefix is None or region is None:
            raise click.ClickException(
                f"{exc}. To tear down without it, name what to remove: --prefix NAME --region "
                "REGION"
            ) from None
        click.echo(f"warning: {exc.path} could not be read; removing prefix {prefix} in "
                   f"{region} from the options alone", err=True)
        config = aws_config(ctx, prefix, region, endpoint_url, read_file=False)
    if not yes:
        what = (
            "the function, queues and role"
            if keep_data
            else "the function, queues, role, table and bucket (every run and payload in them)"
        )
        click.confirm(f"Remove {what} of prefix {config.prefix}?", abort=True, err=True)
    changes = run(config, keep_data=keep_data)
    forgot, default = _forget(config.prefix, keep_data, changes)
    if as_json:
        echo_json(
            {
                "changes": [change.to_json() for change in changes],
                "forgot": forgot,
                "default_prefix": default,
            }
        )
        return
    if changes:
        show(changes_table(changes))
    else:
        click.echo(f"nothing to remove for prefix {config.prefix}", err=True)
    if forgot and default is None:
        click.echo(f"removed {forgot}", err=True)
    elif forgot:
        click.echo(
            f"removed prefix {config.prefix} from {forgot}; aws:// now means prefix {default}",
            err=True,
        )


def _forget(prefix: str, keep_data: bool, changes: list[Change]) -> tuple[str | None, str | None]:
    # aws.json names what is gone now; a kept table or bucket still needs it.
    from worlds.aws._config import CONFIG_PATH, forget_config

    if keep_data or any(change.action == "kept" for change in changes):
        return None, None
    forgot, default = forget_config(prefix)
    return (str(CONFIG_PATH) if forgot else None), default


@click.command()
@aws_options
@click.option("--redrive", is_flag=True, help="Move the messages back to the run queue.")
@click.option("--run", "runs", multiple=True, metavar="RUN_ID", help="Only this run (repeatable).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1))
@json_option
@click.pass_context
def dlq(
    ctx: click.Context,
    prefix: str | None,
    region: str | None,
    endpoint_url: str | None,
    redrive: bool,
    runs: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List the messages in the dead-letter queue (poison messages), or move them back.

    SQS moves a message there after it was received --max-receives times without being
    settled. --redrive sends them back to the run queue so workers look at their runs again.
    """
    from worlds.aws._infra import dead_letters
    from worlds.aws._infra import redrive as move

    config = aws_config(ctx, prefix, region, endpoint_url)
    if redrive:
        letters = move(config, runs=frozenset(runs), limit=limit)
    else:
        letters = [m for m in dead_letters(config, limit=limit) if not runs or m.run in runs]
    if as_json:
        key = "moved" if redrive else "messages"
        echo_json({"queue": config.dead_letter_queue, key: [_letter_json(m) for m in letters]})
        return
    if letters:
        show(_letters_table(letters))
    if redrive:
        click.echo(
            f"moved {len(letters)} message(s) from {config.dead_letter_queue} back to "
            f"{config.queue}",
            err=True,
        )
    elif letters:
        click.echo(
            f"{len(letters)} message(s) in {config.dead_letter_queue}; `durable dlq --redrive` "
            f"sends them back to {config.queue}. RECEIVED is SQS's count of receives, earlier "
            "`durable dlq` listings included (each looks at the messages once)",
            err=True,
        )
    else:
        click.echo(f"{config.dead_letter_queue} is empty", err=True)


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "run": letter.run,
        "kind": letter.kind,
        "receives": letter.receives,
        "sent": iso(letter.sent),
        "due": iso(letter.at),
        "body": letter.body,
    }


def _letters_table(letters: list[DeadLetter]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUN ID", "KIND", "RECEIVED", "SENT", "DUE", "MESSAGE ID"):
        table.add_column(column, no_wrap=True, justify="right" if column == "RECEIVED" else "left")
    for letter in letters:
        table.add_row(
            letter.run or Text(f"(not durable's: {letter.body[:40]})", "magenta"),
            letter.kind or "-",
            str(letter.receives),
            format_local(letter.sent) if letter.sent else "-",
            format_local(letter.at) if letter.at is not None else "-",
            letter.message_id,
        )
    return table
