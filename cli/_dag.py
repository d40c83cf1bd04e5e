"""``durable dag validate FILE`` and ``durable dag run FILE``: runtime-defined DAG workflows."""

from __future__ import annotations

import json
from typing import Any

import click

import durable
from cli._common import (
    echo_json,
    import_modules,
    json_option,
    read_json_argument,
    starting_world,
)
from cli._runs import stdout_to_stderr, wait_for_run
from cli._schema import run_json
from cli._stopping import INTERRUPTED

__all__ = ["dag"]

_module_option = click.option(
    "-m",
    "--module",
    "modules",
    multiple=True,
    help="Import this module first (it registers handlers with @durable.dag.handler); repeatable.",
)


def _load(path: str) -> Any:
    from durable import dag as durable_dag  # pydantic models: built only when needed

    try:
        return durable_dag.load_file(path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def dag() -> None:
    """Validate and run DAG workflows defined in JSON (or YAML, with PyYAML) files."""


@dag.command()
def schema() -> None:
    """Print the JSON Schema of DAG spec files (also published as durable/dag/schema.json)."""
    from durable.dag._spec import spec_schema  # importing durable.dag registers its workflow

    click.echo(json.dumps(spec_schema(), indent=2, sort_keys=True))


@dag.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_module_option
@json_option
def validate(file: str, modules: tuple[str, ...], as_json: bool) -> None:
    """Check FILE: print every problem (one line each, with its node) and exit 1 if any."""
    from durable import dag as durable_dag  # pydantic models: built only when needed

    import_modules(modules)
    raw = _load(file)
    try:
        spec = durable_dag.validate(raw)
    except durable_dag.DagValidationError as exc:
        if as_json:
            echo_json(
                {"valid": False, "problems": [
                    {"node": p.node, "message": p.message} for p in exc.problems
                ]}
            )
        else:
            for problem in exc.problems:
                click.echo(f"{file}: {problem}", err=True)
        raise SystemExit(1) from None
    notes = durable_dag.advice(spec)
    if as_json:
        echo_json({"valid": True, "nodes": len(spec.nodes), "waves": durable_dag.waves(spec),
                   "advice": [{"node": n.node, "message": n.message} for n in notes]})
    else:
        click.echo(f"{file}: valid ({len(spec.nodes)} nodes in {len(durable_dag.waves(spec))} "
                   "waves)")
        for note in notes:
            click.echo(f"{file}: note: {note}", err=True)


@dag.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--input", "input_text",
    help="The run input, as JSON; '-' reads it from stdin, '@PATH' from a file.",
)
@click.option("--wait", is_flag=True, help="Execute the run in this process and print its result.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option("--run-id", help="Choose the run id; starting an existing id returns that run.")
@_module_option
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    file: str,
    input_text: str | None,
    wait: bool,
    timeout: float | None,
    run_id: str | None,
    modules: tuple[str, ...],
    as_json: bool,
) -> None:
    """Validate FILE and start a run of it (workflow ``durable.dag``); print the run id.

    Without --wait the run waits for a worker importing the handler modules
    (`durable worker durable.dag MODULE`); with --wait this process runs it and prints the result.
    """
    from durable import dag as durable_dag  # pydantic models: built only when needed

    import_modules(modules)
    raw = _load(file)
    run_input: Any = None
    if input_text is not None:
        text, what = read_json_argument(input_text, "--input")
        try:
            run_input = json.loads(text)
        except ValueError as exc:
            raise click.ClickException(f"{what} is not valid JSON: {exc}") from exc
    try:
        durable_dag.validate(raw)
    except durable_dag.DagValidationError as exc:
        for problem in exc.problems:
            click.echo(f"{file}: {problem}", err=True)
        raise SystemExit(1) from None
    # No embedded worker, even with --wait: it would execute any run waiting in the world whose
    # workflow this process knows. The driver executes this run (and its children) only.
    runtime = durable.configure(starting_world(ctx, wait), worker=False)
    try:
        existing = runtime.world.get_run(run_id) if run_id else None
        handle = durable_dag.start(raw, run_input, run_id=run_id, execute=False)
        if not as_json:
            click.echo(handle.id)
        interrupted = False
        if existing is not None:
            click.echo(f"run {handle.id} already exists ({existing.status})", err=True)
        if wait:
            with stdout_to_stderr(as_json):
                interrupted = wait_for_run(
                    runtime, handle.id, " ".join(["durable.dag", *modules]), timeout, as_json
                )
        elif existing is None:
            command = " ".join(["durable worker durable.dag", *modules])
            click.echo(f"started DAG run {handle.id}: a worker executes it ({command})", err=True)
        record = runtime.world.get_run(handle.id)
        assert record is not None
        if as_json:
            echo_json({**run_json(record, detail=wait), "created": existing is None})
        elif wait and record.status == "completed":
            click.echo(json.dumps(run_json(record, detail=True)["result"], ensure_ascii=False))
        if interrupted:
            ctx.exit(INTERRUPTED)
        if as_json and wait and record.status != "completed":
            ctx.exit(1)
    finally:
        runtime.stop()
        runtime.world.close()
