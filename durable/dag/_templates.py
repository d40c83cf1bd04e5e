"""``{{ input.x }}`` / ``{{ node.output.a.b[0] }}`` templates in node configs.

A string that is exactly one template resolves to the referenced value with its type kept (a
number stays a number); templates inside longer strings are rendered as text (JSON for
containers and ``null``).

In a ``foreach`` node's config, ``{{ item }}`` is the current element and ``{{ index }}`` its
position (both may be followed by a path: ``{{ item.name }}``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FOREACH_VARS",
    "TEMPLATE",
    "Reference",
    "TemplateError",
    "one_template",
    "parse",
    "references",
    "render",
]

FOREACH_VARS = frozenset({"item", "index"})
"""The variables a ``foreach`` node's config templates may use."""

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_ROOT = re.compile(rf"^({_NAME})")
_SEGMENT = re.compile(rf"\.({_NAME})|\[(-?\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


class TemplateError(ValueError):
    """A template is malformed or names a path that does not exist."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed template: ``input`` (the run input) or a node's ``output``, then a path."""

    source: str
    """``"input"``, a node id, or a variable name (``item``, ``index``)."""
    is_input: bool
    path: tuple[str | int, ...]
    text: str
    """The expression as written (without braces)."""
    is_var: bool = False
    """``source`` is a variable (``item``/``index`` in a ``foreach`` node), not a node."""


def parse(
    expr: str, node_ids: frozenset[str] | set[str], variables: frozenset[str] = frozenset()
) -> Reference:
    """Parse one template expression.

    ``input...`` is the run input, unless a node is called ``input`` and the expression is
    ``input.output...`` (then it is that node's output); the same goes for ``variables``.

    Raises:
        TemplateError: the expression is not ``input[.path]``, ``<node>.output[.path]`` or
            ``<variable>[.path]``.
    """
    match = _ROOT.match(expr)
    if match is None:
        raise TemplateError(f"'{{{{ {expr} }}}}' must start with 'input' or a node id")
    root = match.group(1)
    path: list[str | int] = []
    pos = match.end()
    while pos < len(expr):
        seg = _SEGMENT.match(expr, pos)
        if seg is None:
            raise TemplateError(
                f"'{{{{ {expr} }}}}': cannot parse {expr[pos:]!r} (use .name, [0] or [\"key\"])"
            )
        name, index, dq, sq = seg.groups()
        path.append(int(index) if index is not None else (name or dq or sq or ""))
        pos = seg.end()
    if root in node_ids and path[:1] == ["output"]:
        return Reference(root, False, tuple(path[1:]), expr)
    if root == "input":
        return Reference("input", True, tuple(path), expr)
    if root in variables:
        return Reference(root, False, tuple(path), expr, is_var=True)
    if root in FOREACH_VARS:
        raise TemplateError(f"'{{{{ {expr} }}}}': '{root}' is only available in the config of "
                            "a node with 'foreach'")
    if root in node_ids:
        raise TemplateError(f"'{{{{ {expr} }}}}': write '{root}.output' to use node {root!r}")
    raise TemplateError(f"'{{{{ {expr} }}}}' names unknown node {root!r}")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a (nested) config value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def unclosed(value: Any) -> Iterator[str]:
    """Every string in a (nested) config value with a ``{{`` that no ``}}`` closes."""
    return (text for text in _strings(value) if "{{" in TEMPLATE.sub("", text))


def templates(value: Any) -> Iterator[str]:
    """Every template expression in a (nested) config value."""
    for text in _strings(value):
        for match in TEMPLATE.finditer(text):
            yield match.group(1)


def references(
    value: Any, node_ids: frozenset[str] | set[str], variables: frozenset[str] = frozenset()
) -> Iterator[Reference]:
    """Parse every template in ``value``.

    Raises:
        TemplateError: a template is malformed.
    """
    for expr in templates(value):
        yield parse(expr, node_ids, variables)


def _lookup(root: Any, ref: Reference, where: str, nulls_pass: bool = False) -> Any:
    value = root
    walked = "input" if ref.is_input else ref.source if ref.is_var else f"{ref.source}.output"
    for key in ref.path:
        if value is None and nulls_pass:
            return None  # a failed element of a foreach node: what follows it is null too
        try:
            if isinstance(key, int):
                if not isinstance(value, list | tuple):
                    raise TypeError
                value = value[key]
            else:
                if not isinstance(value, Mapping):
                    raise TypeError
                value = value[key]
        except (KeyError, IndexError, TypeError):
            shown = f"[{key}]" if isinstance(key, int) else f".{key}"
            raise TemplateError(
                f"{where}: '{{{{ {ref.text} }}}}': {walked}{shown} not found "
                f"({walked} is {_describe(value)})"
            ) from None
        walked += f"[{key}]" if isinstance(key, int) else f".{key}"
    return value


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = ", ".join(repr(k) for k in list(value)[:10])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    return "null" if value is None else f"a {type(value).__name__}"


def render(
    value: Any,
    run_input: Any,
    outputs: Mapping[str, Any],
    where: str,
    node_ids: frozenset[str],
    variables: Mapping[str, Any] | None = None,
    absent: frozenset[str] = frozenset(),
    partial: frozenset[str] = frozenset(),
) -> Any:
    """Resolve every template in ``value`` (recursively through dicts, their keys, and lists).

    Args:
        value: a config value.
        run_input: the run's input (``{{ input... }}``).
        outputs: finished nodes' outputs by id (``{{ node.output... }}``).
        where: names the node in errors (``"node 'c'"``).
        node_ids: every node id of the spec.
        variables: extra names templates may use (``item`` and ``index`` in ``foreach``).
        absent: nodes that were skipped or failed: any path into their output is ``null``.
        partial: foreach nodes some elements of which failed (``null`` in the list): a path
            through such an element is ``null``.

    Raises:
        TemplateError: a template is malformed or a path is missing; the message names ``where``
            and the path.
    """
    scope = _Scope(run_input, outputs, where, node_ids, variables or {}, absent, partial)
    return _render(value, scope)


@dataclass(frozen=True, slots=True)
class _Scope:
    run_input: Any
    outputs: Mapping[str, Any]
    where: str
    node_ids: frozenset[str]
    variables: Mapping[str, Any]
    absent: frozenset[str]
    partial: frozenset[str]


def _render(value: Any, scope: _Scope) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope)
    if isinstance(value, Mapping):
        rendered: dict[Any, Any] = {}
        for key, item in value.items():
            name = _render_key(key, scope)
            if name in rendered:
                raise TemplateError(
                    f"{scope.where}: the key {key!r} renders as {name!r}, which the mapping "
                    "already has"
                )
            rendered[name] = _render(item, scope)
        return rendered
    if isinstance(value, list | tuple):
        return [_render(v, scope) for v in value]
    return value


def _resolve(expr: str, scope: _Scope) -> Any:
    run_input, outputs, where = scope.run_input, scope.outputs, scope.where
    try:
        ref = parse(expr, scope.node_ids, frozenset(scope.variables))
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    if ref.is_input:
        return _lookup(run_input, ref, where)
    if ref.is_var:
        return _lookup(scope.variables[ref.source], ref, where)
    if ref.source in scope.absent:
        return None  # a skipped or failed node: what an all_done node reads of it is null
    if ref.source not in outputs:
        raise TemplateError(f"{where}: '{{{{ {expr} }}}}': node {ref.source!r} has not run")
    return _lookup(outputs[ref.source], ref, where, ref.source in scope.partial)


def one_template(text: str) -> str | None:
    """The expression of a string that is exactly one template (``None`` if it is not)."""
    whole = TEMPLATE.fullmatch(text.strip())
    if whole is None or "{{" in whole.group(1) or "}}" in whole.group(1):
        return None
    return whole.group(1)


def _render_string(text: str, scope: _Scope) -> Any:
    whole = one_template(text)
    if whole is not None:
        return _resolve(whole, scope)

    def substitute(match: re.Match[str]) -> str:
        return _as_text(_resolve(match.group(1), scope), match.group(0), scope.where)

    return TEMPLATE.sub(substitute, text)


def _render_key(key: Any, scope: _Scope) -> Any:
    if not isinstance(key, str) or "{{" not in key:
        return key
    rendered = _render_string(key, scope)
    return rendered if isinstance(rendered, str) else _as_text(rendered, key, scope.where)


def _as_text(value: Any, template: str, where: str) -> str:
    """A value embedded in a longer string: itself if text, else JSON (ISO 8601 for times)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.date | dt.time | uuid.UUID | decimal.Decimal):
        return value.isoformat() if not isinstance(value, uuid.UUID | decimal.Decimal) \
            else str(value)
    try:
        return json.dumps(value, default=_plain)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"{where}: '{template}' cannot be written into text: {exc}") from None


def _plain(value: Any) -> Any:
    """JSON for what step results may hold besides JSON's own types."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:  # mixed types: an order that is at least the same every time
            return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")
