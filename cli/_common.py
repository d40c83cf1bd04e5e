"""What every command shares: the world to use, importing user code, and printing."""

from __future__ import annotations

import importlib
import json
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType

import durable
from durable._client import DEFAULT_WORLD
from durable._decorators import Workflow, registered_workflows
from durable.world import World, open_world
from worlds.sqlite._world import parse_url

__all__ = [
    "concurrency_option",
    "console",
    "echo_json",
    "import_from_project_directory",
    "import_modules",
    "json_option",
    "load_workflow",
    "opened_world",
    "read_json_argument",
    "show",
    "starting_world",
    "world_location",
    "world_url",
]

F = TypeVar("F", bound=Callable[..., Any])

_PIPE_WIDTH = 240
"""Console width when stdout is not a terminal, so piped tables keep whole run ids."""


def console(stderr: bool = False) -> Console:
    """A rich console for tables; wide and colourless when output goes to a pipe or file."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=_PIPE_WIDTH, highlight=False, no_color=True)


def show(*renderables: RenderableType) -> None:
    """Print tables and text on stdout (without trailing padding when it is not a terminal)."""
    out = console()
    if out.is_terminal:
        for renderable in renderables:
            out.print(renderable)
        return
    with out.capture() as captured:
        for renderable in renderables:
            out.print(renderable)
    lines = captured.get().split("\n")
    sys.stdout.write("\n".join(line.rstrip() for line in lines))
    sys.stdout.flush()


def json_option(fn: F) -> F:
    """Add ``--json`` to a command (passed to it as ``as_json``)."""
    option = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print machine-readable JSON (stable keys, ISO 8601 UTC times) instead of tables.",
    )
    return option(fn)


def echo_json(value: object) -> None:
    """Print a JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def read_json_argument(text: str, name: str) -> tuple[str, str]:
    """The JSON an argument stands for: itself, ``-`` for stdin, or ``@PATH`` for a file's text.

    One argument is limited to 128 KiB on Linux, so larger inputs come from stdin or a file
    (as with curl's ``-d @file``). Neither ``-`` nor ``@`` can begin a JSON document.

    Args:
        text: the argument as given.
        name: its name in messages (``"ARGS"``).

    Returns:
        ``(json_text, what)``: ``what`` names the argument and where it came from, for messages.

    Raises:
        click.ClickException: the file cannot be read, or is not UTF-8.
    """
    if text == "-":
        source, what = "stdin", f"{name} (from stdin)"
    elif text.startswith("@"):
        source, what = text[1:], f"{name} (from {text[1:]})"
    else:
        return text, name
    try:
        if source == "stdin":
            return sys.stdin.buffer.read().decode("utf-8"), what
        with open(source, "rb") as file:
            return file.read().decode("utf-8"), what
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise click.ClickException(f"cannot read {name} from {source!r}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{what} is not UTF-8 text ({exc.reason})") from None


def starting_world(ctx: click.Context, wait: bool) -> str:
    """The world to start a run in; a ``memory://`` one only if this process executes it."""
    url = world_url(ctx)
    if not wait and url.startswith("memory:"):
        raise click.ClickException(
            f"{url} keeps runs inside this process, which exits once the run is recorded: "
            "add --wait, or use a sqlite:// or aws:// world that workers share"
        )
    return url


def world_url(ctx: click.Context) -> str:
    """The world URL: ``--world``, else ``DURABLE_WORLD``, else the default SQLite file."""
    obj = ctx.find_root().obj or {}
    url = obj.get("world")
    return url if isinstance(url, str) and url else DEFAULT_WORLD


@contextmanager
def opened_world(ctx: click.Context, *, may_be_new: bool = False) -> Iterator[World]:
    """Open the world for a command that only reads or edits records (no worker starts).

    A SQLite file that does not exist yet is refused unless ``may_be_new``: creating one for
    ``durable runs --world sqlite:///typo.db`` would show a mistyped path as an empty world.
    """
    url = world_url(ctx)
    if not may_be_new and url.startswith("sqlite:"):
        path = parse_url(url)[0]
        if not path.exists():
            raise click.ClickException(
                f"no world at {path}: nothing has run there (a run started on it creates it); "
                "check --world or DURABLE_WORLD"
            )
    world = open_world(url)
    try:
        yield world
    finally:
        world.close()


def import_from_project_directory() -> None:
    """Let the user's modules import from the current directory, as ``python -m`` would.

    The ``durable`` console script runs with its own directory first on ``sys.path``, not the
    current one, so without this ``durable worker app`` would not find ``./app.py``. Every command
    that may import the user's code (a workflow, a hook's payload model) calls it, so that all of
    them find the same modules from the project's directory.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def import_modules(modules: tuple[str, ...]) -> None:
    """Import the user's modules (by dotted name or file path) so their workflows register.

    Raises:
        click.ClickException: a module failed to import (one line naming the error).
    """
    import_from_project_directory()
    for module in modules:
        _import(module)


def _import(module: str) -> Any:
    name = module
    if module.endswith(".py"):
        path = os.path.relpath(os.path.abspath(module[:-3]))
        if path.startswith(os.pardir + os.sep):
            # Outside the working directory, so not a package path from here: importable by its
            # file name once its directory is on the path.
            sys.path.insert(0, os.path.dirname(os.path.abspath(module)))
            path = os.path.basename(path)
        name = path.replace(os.sep, ".")
    elif ":" in module:
        raise click.ClickException(
            f"{module!r} is not a module: give a module (app.flows) or a file (app/flows.py); "
            "a worker runs every workflow the module registers, so name no function"
        )
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as exc:
        debug = os.environ.get("DURABLE_DEBUG") == "1"
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        where = _raised_at(exc)
        hint = "" if debug else "; DURABLE_DEBUG=1 shows the traceback"
        raise click.ClickException(
            f"could not import {module!r}: {type(exc).__name__}: {exc}"
            + (f" ({where}{hint})" if where else "")
        ) from exc


def _raised_at(exc: BaseException) -> str | None:
    """``raised at app/config.py:12 in load``: the innermost frame of the user's own code.

    Frames of the standard library, installed packages, durable and this command are skipped,
    so an error inside a library points at the user's line that called it. ``None`` when no frame
    is the user's (the module itself was not found, or has a syntax error, which says where).
    """
    skipped = {sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    skipped.add(os.path.dirname(os.path.abspath(durable.__file__)))
    skipped.add(os.path.dirname(os.path.abspath(__file__)))  # this command's own code
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        path = frame.f_code.co_filename
        if path.startswith("<") or any(
            root and os.path.abspath(path).startswith(root + os.sep) for root in skipped
        ):
            continue
        found = (path, line, frame.f_code.co_name)
    if found is None:
        return None
    path, line, function = found
    shown = os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path
    within = "" if function == "<module>" else f" in {function}"
    return f"raised at {shown}:{line}{within}"


def load_workflow(spec: str) -> Workflow[..., Any]:
    """Import ``MODULE:WORKFLOW`` and return the workflow it names.

    ``WORKFLOW`` is an attribute of the module, or the registered name of a workflow the module
    defines (``@workflow(name=...)``).

    Raises:
        click.ClickException: the spec is malformed, the module fails to import, or it has no
            such workflow.
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise click.ClickException(
            f"expected MODULE:WORKFLOW, got {spec!r} (for example examples.signup:signup)"
        )
    import_from_project_directory()
    module = _import(module_name)
    found = getattr(module, attr, None)
    if isinstance(found, Workflow):
        return found
    defn = registered_workflows().get(attr)
    if defn is not None:
        return Workflow(defn)
    defined = sorted(v.name for v in vars(module).values() if isinstance(v, Workflow))
    hint = f"it defines: {', '.join(defined)}" if defined else "it defines no @workflow"
    what = "is not a @workflow" if found is not None else "not found"
    raise click.ClickException(f"workflow {attr!r} {what} in module {module_name!r} ({hint})")


def world_location(world: Any) -> str:
    """The world's URL, with a SQLite file's absolute path.

    A relative path names another file in each working directory: a worker and the processes
    starting runs would use different worlds without a word.
    """
    url = str(world.url)
    path = getattr(world, "path", None)
    if url.startswith("sqlite:") and path is not None and not os.path.isabs(url[10:]):
        return f"{url} ({os.path.abspath(path)})"
    return url


concurrency_option = click.option(
    "--concurrency", default=64, show_default=True, type=click.IntRange(min=1),
    help="Runs executed at once.",
)
"""The ``--concurrency`` of the commands that run a worker."""
