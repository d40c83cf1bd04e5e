"""The handler registry (``@durable.dag.handler("name")``) and the built-in handlers."""

from __future__ import annotations

import http.client
import importlib
import inspect
import json as _json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any, TypeVar

from durable._api import sleep as durable_sleep
from durable._api import step_info
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
    if not isinstance(function, str):
        raise HandlerConfigError(f"python handler: function must be a string, got {function!r}")
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
    params: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float = 30,
    **_: Any,
) -> dict[str, Any]:
    """An HTTP request (runs as a step). Output: ``{"status", "headers", "body"}``.

    ``params`` are query parameters, URL-encoded and appended to ``url``. Every request carries
    an ``Idempotency-Key`` header, the step's :attr:`~durable.StepInfo.idempotency_key` (the
    same on every attempt of the node, so a server that honours it does not act twice on a
    retried POST), unless ``headers`` sets one. ``body`` is the parsed JSON when the response's
    content type is JSON, else the text.

    A 5xx, 408 or 429 response raises :class:`~durable.RetryableError` (retried per the node's
    ``retry``, honouring a numeric ``Retry-After``); any other non-2xx response raises
    :class:`HttpStatusError` (a :class:`~durable.FatalError`: no further attempts).
    Connection errors and timeouts raise ordinary exceptions, which are retried. A URL that
    cannot be sent (not http(s), no host, spaces, control or non-ASCII characters) raises
    :class:`HandlerConfigError` at once.
    """
    if not isinstance(url, str) or not url:
        raise FatalError(f"http handler: 'url' must be a non-empty string, got {url!r}")
    problem = _url_problem(url)
    if problem is not None:
        raise HandlerConfigError(f"http handler: cannot send to url {url!r}: {problem}")
    url = _with_params(url, params)
    method = method.upper()
    sent = {str(k): str(v) for k, v in (headers or {}).items()}
    if not _has_header(sent, "Idempotency-Key"):
        key = _idempotency_key()
        if key is not None:
            sent["Idempotency-Key"] = key
    data = None
    if json is not None:
        data = _json.dumps(json).encode()
        if not _has_header(sent, "Content-Type"):
            sent["Content-Type"] = "application/json"
    status, got, raw = _send(url, method, sent, data, float(timeout))
    body = _decode_body(got.get("Content-Type", ""), raw)
    result = {"status": status, "headers": dict(got.items()), "body": body}
    if 200 <= status < 300:
        return result
    snippet = raw[:200].decode("utf-8", "replace")
    message = f"HTTP {status} from {method} {url}: {snippet}"
    if status >= 500 or status in _RETRYABLE_4XX:
        after = got.get("Retry-After")
        delay = float(after) if after and after.strip().isdigit() else None
        raise RetryableError(message, retry_after=delay)
    raise HttpStatusError(message)


def _send(
    url: str, method: str, headers: dict[str, str], data: bytes | None, timeout: float
) -> tuple[int, Message, bytes]:
    try:
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
    except OSError:
        raise  # connection errors and timeouts: retried
    except (http.client.InvalidURL, ValueError) as exc:
        # What _url_problem does not foresee (a method or header value http.client refuses)
        # fails the same way on every attempt: a spec or data error, not a transient one.
        raise HandlerConfigError(
            f"http handler: cannot send {method} {url!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be sent (the same on every attempt), if it cannot."""
    bad = next((c for c in url if c <= " " or c == "\x7f"), None)
    if bad is not None:
        return (f"it contains {bad!r} (spaces and control characters must be percent-encoded; "
                "pass query values in 'params')")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return "it is not an http:// or https:// URL"
    if not parts.hostname:
        return "it has no host"
    # http.client sends the path and query as ASCII (only the host may be an international
    # name, which it encodes).
    foreign = next((c for c in parts.path + parts.query if not c.isascii()), None)
    if foreign is not None:
        return (f"it contains the non-ASCII character {foreign!r} (percent-encode it with "
                "urllib.parse.quote, or pass query values in 'params')")
    return None


def _with_params(url: str, params: Any) -> str:
    """``url`` with ``params`` URL-encoded into its query string."""
    if params is None:
        return url
    if not isinstance(params, dict):
        raise HandlerConfigError(
            f"http handler: 'params' must be a mapping of query parameters, got {params!r}"
        )
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for one in value if isinstance(value, list) else [value]:
            if one is not None:  # an absent optional value leaves its parameter out
                pairs.append((str(name), _query_value(name, one)))
    if not pairs:
        return url
    query = urllib.parse.urlencode(pairs)
    base, hash_, fragment = url.partition("#")
    joiner = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return f"{base}{joiner}{query}{hash_}{fragment}"


def _query_value(name: Any, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes them, not Python's True
    if isinstance(value, str | int | float):
        return str(value)
    raise HandlerConfigError(
        f"http handler: query parameter {name!r} must be a string, number, boolean, null or a "
        f"list of them, got {value!r}"
    )


def _has_header(headers: dict[str, str], name: str) -> bool:
    return any(k.lower() == name.lower() for k in headers)


def _idempotency_key() -> str | None:
    """The step's idempotency key; none when the handler is called outside a step."""
    try:
        return step_info().idempotency_key
    except ConfigurationError:
        return None


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
    "hook": ("token", "timeout", "open_at_start"),
    "http": ("url", "method", "params", "headers", "json", "timeout"),
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
