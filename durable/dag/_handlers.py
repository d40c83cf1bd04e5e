"""The handler registry (``@durable.dag.handler("name")``) and the built-in handlers."""

from __future__ import annotations

import importlib
import inspect
import json as _json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from durable._api import sleep as durable_sleep
from durable._errors import ConfigurationError, FatalError, RetryableError
from durable._timeouts import call_with_timeout, run_awaitable

__all__ = [
    "REQUIRED_CONFIG",
    "Handler",
    "HandlerConfigError",
    "HttpStatusError",
    "config_problem",
    "handler",
    "lookup",
    "registered",
]


class HandlerConfigError(FatalError, ConfigurationError):
    """A node's config does not fit its handler: a spec error, never retried."""


def config_problem(found: Handler, keys: list[str]) -> str | None:
    """Why a config with ``keys`` cannot be passed to the handler, if it cannot."""
    allowed = BUILTIN_KEYS.get(found.name) if found.fn.__module__ == __name__ else None
    if allowed is not None:
        unknown = [k for k in keys if k not in allowed]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            takes = ", ".join(allowed) or "no config"
            return f"handler {found.name!r} takes no config {names} (it takes: {takes})"
        return None
    try:
        signature = inspect.signature(found.fn)
    except (TypeError, ValueError):  # a builtin or C function: nothing to check
        return None
    try:
        signature.bind(**dict.fromkeys(keys))
    except TypeError as exc:
        accepted = ", ".join(
            p.name for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        return f"config does not fit handler {found.name!r}: {exc} (it takes: {accepted or '-'})"
    return None

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


def call(name: str, config: dict[str, Any], timeout: float | None = None) -> Any:
    """Call a step handler with its config (async handlers run to completion here).

    Args:
        name: the handler.
        config: its keyword arguments.
        timeout: seconds the call may take. An async handler is cancelled when it runs out; a
            sync one cannot be interrupted, so it is left to finish in a background thread
            and its result is ignored.

    Raises:
        ConfigurationError: no handler is registered under ``name``.
        TimeoutError: the call took longer than ``timeout``.
    """
    found = lookup(name)
    if found is None:
        raise ConfigurationError(f"unknown DAG handler {name!r}")
    problem = config_problem(found, list(config))
    if problem is not None:
        raise HandlerConfigError(problem)
    if timeout is None:
        result = found.fn(**config)
        if inspect.isawaitable(result):
            return run_awaitable(result)
        return result
    message = f"handler {name!r} did not finish within its {timeout:g}s timeout"
    return call_with_timeout(found.fn, (), config, timeout, lambda: TimeoutError(message))



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
        raise HandlerConfigError(
            f"python handler: function must be 'package.module.func' or 'package.module:func', "
            f"got {function!r}"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise HandlerConfigError(
            f"python handler: cannot find function {function!r} ({type(exc).__name__}: {exc})"
        ) from exc
    problem = config_problem(Handler(function, target), list(kwargs))
    if problem is not None:
        raise HandlerConfigError(f"python handler: {problem}")
    result = target(**kwargs)
    if inspect.isawaitable(result):
        return run_awaitable(result)
    return result


class HttpStatusError(FatalError):
    """The ``http`` handler got a 4xx response other than 408/429: fails the node at once."""


_RETRYABLE_4XX = (408, 429)


def _http(
    url: str,
    method: str = "GET",
    headers: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float = 30,
    **_: Any,
) -> dict[str, Any]:
    """An HTTP request (runs as a step). Output: ``{"status", "headers", "body"}``.

    ``body`` is the parsed JSON when the response's content type is JSON, else the text.
    A 5xx, 408 or 429 response raises :class:`~durable.RetryableError` (retried per the node's
    ``retry``, honouring a numeric ``Retry-After``); any other non-2xx response raises
    :class:`HttpStatusError` (a :class:`~durable.FatalError`: no further attempts).
    Connection errors and timeouts raise ordinary exceptions, which are retried.
    """
    if not isinstance(url, str) or not url:
        raise FatalError(f"http handler: 'url' must be a non-empty string, got {url!r}")
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    data = None
    if json is not None:
        data = _json.dumps(json).encode()
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=sent, method=method.upper())
    try:
        with urllib.request.urlopen(request, timeout=float(timeout)) as response:  # noqa: S310
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, exc.headers, exc.read()
    body = _decode_body(got.get("Content-Type", ""), raw)
    result = {"status": status, "headers": dict(got.items()), "body": body}
    if 200 <= status < 300:
        return result
    snippet = raw[:200].decode("utf-8", "replace")
    message = f"HTTP {status} from {method.upper()} {url}: {snippet}"
    if status >= 500 or status in _RETRYABLE_4XX:
        after = got.get("Retry-After")
        delay = float(after) if after and after.strip().isdigit() else None
        raise RetryableError(message, retry_after=delay)
    raise HttpStatusError(message)


def _decode_body(content_type: str, raw: bytes) -> Any:
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    text = raw.decode(charset, "replace")
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return _json.loads(text) if text else None
        except ValueError:
            return text
    return text


def _hook(token: str, timeout: Any = None, **_: Any) -> Any:
    # Inline: waits in the workflow itself; a timeout raises HookTimeout (the node fails).
    from durable._hooks import create_hook

    if not isinstance(token, str) or not token:
        raise HandlerConfigError(f"hook handler: 'token' must be a non-empty string, got {token!r}")
    hook = create_hook(token, timeout=timeout)
    payload = hook.wait()
    hook.dispose()
    return payload


def _workflow(name: str, args: Any = None, kwargs: Any = None, **_: Any) -> Any:
    # Inline: runs the registered workflow as a child run and returns its result.
    from durable._decorators import Workflow, lookup_workflow
    from durable._errors import UnknownWorkflow

    defn = lookup_workflow(name)
    if defn is None:
        raise UnknownWorkflow(name)
    if args is not None and not isinstance(args, list):
        raise HandlerConfigError(f"workflow handler: 'args' must be a list, got {args!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise HandlerConfigError(f"workflow handler: 'kwargs' must be a mapping, got {kwargs!r}")
    return Workflow(defn)(*(args or []), **(kwargs or {}))


BUILTIN_KEYS: dict[str, tuple[str, ...]] = {
    "sleep": ("duration",),
    "hook": ("token", "timeout"),
    "http": ("url", "method", "headers", "json", "timeout"),
    "workflow": ("name", "args", "kwargs"),
}
"""The config keys of the built-in handlers that take fixed ones (``output`` and ``python``
take any; ``input`` ignores its config): another key is a typo, which would otherwise be
ignored (a hook's ``timout``)."""

REQUIRED_CONFIG: dict[str, tuple[str, ...]] = {
    "http": ("url",),
    "hook": ("token",),
    "workflow": ("name",),
    "python": ("function",),
}
"""Config keys each built-in needs; validation reports a missing one against its node."""

# ``input`` is handled by the executor (it needs the run input); registered here so validation
# knows the name.
_register_builtin("input", lambda **_: None, inline=True)
_register_builtin("output", _output, inline=True)
_register_builtin("sleep", _sleep, inline=True)
_register_builtin("python", _python, inline=False)
_register_builtin("http", _http, inline=False)
_register_builtin("hook", _hook, inline=True)
_register_builtin("workflow", _workflow, inline=True)
