"""The handler registry (``@durable.dag.handler("name")``) and the built-in handlers."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from durable._api import sleep as durable_sleep
from durable._errors import ConfigurationError

__all__ = ["Handler", "handler", "lookup", "registered"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler."""

    name: str
    fn: Callable[..., Any]
    inline: bool = False
    """Runs in the workflow body (must be deterministic or use durable primitives) instead of
    as a step; the built-ins ``input``, ``output`` and ``sleep`` do."""


_registry: dict[str, Handler] = {}
_lock = threading.Lock()


def handler(name: str) -> Callable[[F], F]:
    """Register a function as the DAG handler ``name``.

    The function is called with the node's resolved ``config`` as keyword arguments and runs
    as a durable step named ``name`` (retried per the node's ``retry``); its return value (JSON
    data) is the node's output. Registering another function under an existing name replaces it.
    """
    if not name or not isinstance(name, str):
        raise ConfigurationError(f"a handler name must be a non-empty string, got {name!r}")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigurationError(f"@handler({name!r}) decorates a function, got {fn!r}")
        with _lock:
            _registry[name] = Handler(name, fn)
        return fn

    return decorate


def lookup(name: str) -> Handler | None:
    """The handler registered under ``name``, if any."""
    return _registry.get(name)


def registered() -> list[str]:
    """The names of every registered handler, sorted."""
    with _lock:
        return sorted(_registry)


def call(name: str, config: dict[str, Any]) -> Any:
    """Call a step handler with its config (async handlers run to completion here).

    Raises:
        ConfigurationError: no handler is registered under ``name``.
    """
    found = lookup(name)
    if found is None:
        raise ConfigurationError(f"unknown DAG handler {name!r}")
    result = found.fn(**config)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(value: Any) -> Any:
    return await value


def _register_builtin(name: str, fn: Callable[..., Any], inline: bool) -> None:
    _registry[name] = Handler(name, fn, inline)


def _output(**config: Any) -> Any:
    # {"value": X} returns X; any other config is returned as the output mapping.
    if set(config) == {"value"}:
        return config["value"]
    return config


def _sleep(duration: Any = 0, **_: Any) -> None:
    durable_sleep(duration)


def _python(function: str, **kwargs: Any) -> Any:
    module_name, sep, attr = function.partition(":")
    if not sep:
        module_name, _, attr = function.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(
            f"python handler: function must be 'package.module.func' or 'package.module:func', "
            f"got {function!r}"
        )
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    result = target(**kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


# ``input`` is handled by the executor (it needs the run input); registered here so validation
# knows the name.
_register_builtin("input", lambda **_: None, inline=True)
_register_builtin("output", _output, inline=True)
_register_builtin("sleep", _sleep, inline=True)
_register_builtin("python", _python, inline=False)
