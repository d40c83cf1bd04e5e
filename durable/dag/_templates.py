"""``{{ input.x }}`` / ``{{ node.output.a.b[0] }}`` templates in node configs.

A string that is exactly one template resolves to the referenced value with its type kept (a
number stays a number); templates inside longer strings are rendered as text (JSON for
containers and ``null``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Reference", "TemplateError", "parse", "references", "render"]

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_ROOT = re.compile(rf"^({_NAME})")
_SEGMENT = re.compile(rf"\.({_NAME})|\[(-?\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


class TemplateError(ValueError):
    """A template is malformed or names a path that does not exist."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed template: ``input`` (the run input) or a node's ``output``, then a path."""

    source: str
    """``"input"`` or a node id."""
    is_input: bool
    path: tuple[str | int, ...]
    text: str
    """The expression as written (without braces)."""


def parse(expr: str, node_ids: frozenset[str] | set[str]) -> Reference:
    """Parse one template expression.

    ``input...`` is the run input, unless a node is called ``input`` and the expression is
    ``input.output...`` (then it is that node's output).

    Raises:
        TemplateError: the expression is not ``input[.path]`` or ``<node>.output[.path]``.
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
    if root in node_ids:
        raise TemplateError(f"'{{{{ {expr} }}}}': write '{root}.output' to use node {root!r}")
    raise TemplateError(f"'{{{{ {expr} }}}}' names unknown node {root!r}")


def templates(value: Any) -> Iterator[str]:
    """Every template expression in a (nested) config value."""
    if isinstance(value, str):
        for match in _TEMPLATE.finditer(value):
            yield match.group(1)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from templates(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from templates(item)


def references(value: Any, node_ids: frozenset[str] | set[str]) -> Iterator[Reference]:
    """Parse every template in ``value``.

    Raises:
        TemplateError: a template is malformed.
    """
    for expr in templates(value):
        yield parse(expr, node_ids)


def _lookup(root: Any, ref: Reference, where: str) -> Any:
    value = root
    walked = "input" if ref.is_input else f"{ref.source}.output"
    for key in ref.path:
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
    value: Any, run_input: Any, outputs: Mapping[str, Any], where: str, node_ids: frozenset[str]
) -> Any:
    """Resolve every template in ``value`` (recursively through dicts and lists).

    Args:
        value: a config value.
        run_input: the run's input (``{{ input... }}``).
        outputs: finished nodes' outputs by id (``{{ node.output... }}``).
        where: names the node in errors (``"node 'c'"``).
        node_ids: every node id of the spec.

    Raises:
        TemplateError: a template is malformed or a path is missing; the message names ``where``
            and the path.
    """
    if isinstance(value, str):
        return _render_string(value, run_input, outputs, where, node_ids)
    if isinstance(value, Mapping):
        return {k: render(v, run_input, outputs, where, node_ids) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, run_input, outputs, where, node_ids) for v in value]
    return value


def _resolve(
    expr: str, run_input: Any, outputs: Mapping[str, Any], where: str, node_ids: frozenset[str]
) -> Any:
    try:
        ref = parse(expr, node_ids)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    if ref.is_input:
        return _lookup(run_input, ref, where)
    if ref.source not in outputs:
        raise TemplateError(f"{where}: '{{{{ {expr} }}}}': node {ref.source!r} has not run")
    return _lookup(outputs[ref.source], ref, where)


def _render_string(
    text: str, run_input: Any, outputs: Mapping[str, Any], where: str, node_ids: frozenset[str]
) -> Any:
    whole = _TEMPLATE.fullmatch(text.strip())
    if whole is not None and "{{" not in whole.group(1):
        return _resolve(whole.group(1), run_input, outputs, where, node_ids)

    def substitute(match: re.Match[str]) -> str:
        value = _resolve(match.group(1), run_input, outputs, where, node_ids)
        return value if isinstance(value, str) else json.dumps(value)

    return _TEMPLATE.sub(substitute, text)
