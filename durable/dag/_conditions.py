"""A node's ``when``: one template, or a comparison over templates.

``when: "{{ s.output.ok }}"`` runs the node if the value is truthy. A longer condition compares
templates with literals: ``"{{ input.amount }} > 100"``, ``"not {{ s.output.high }}"``,
``"{{ a.output.status }} == 'ok' and {{ input.retries }} < 3"``, ``"{{ input.tier }} in
['gold', 'silver']"``. Operators: ``== != < <= > >= in``, ``not in``, ``and or not``; literals:
numbers, quoted strings, ``true``/``false``/``null`` (or ``True``/``False``/``None``) and lists.
A condition is parsed, never executed as code.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durable.dag._templates import TEMPLATE, TemplateError, one_template

__all__ = ["Condition", "compile_condition", "truthy"]

_FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "null", "none"})

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
}
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_SLOT = "_durable_template_"
MAX_LENGTH = 4000
"""The longest condition (characters): a longer one belongs in a node."""
MAX_DEPTH = 40
"""How deeply a condition may nest (operators and lists)."""
HINT = (
    "a condition is one template ('{{ s.output.ok }}') or a comparison such as "
    "'{{ input.amount }} > 100', 'not {{ s.output.high }}' or "
    "\"{{ a.output.status }} == 'ok' and {{ input.n }} >= 2\""
)


def truthy(value: Any) -> bool:
    """Whether a condition's value runs the node.

    Falsy: ``false``, ``null``, ``0``, empty strings, lists and objects, and the strings
    ``"false"``, ``"no"``, ``"off"``, ``"0"``, ``"null"`` and ``"none"`` (any case).
    """
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``when``: its template expressions and, for a comparison, its syntax tree."""

    text: str
    templates: tuple[str, ...]
    tree: ast.expr | None
    """``None`` when the condition is exactly one template."""

    def evaluate(self, resolve: Callable[[str], Any], where: str) -> bool:
        """Whether the node runs; ``resolve`` gives a template expression's value.

        Raises:
            TemplateError: a template cannot be resolved, or values cannot be compared.
        """
        values = [resolve(expr) for expr in self.templates]
        if self.tree is None:
            return truthy(values[0])
        return truthy(_evaluate(self.tree, values, f"{where}: when {self.text!r}"))


@functools.lru_cache(maxsize=512)
def compile_condition(text: str) -> Condition:
    """Parse a ``when`` string (parsed once per process: a node's condition is read often).

    Raises:
        TemplateError: it is neither one template nor a comparison over templates and literals.
    """
    whole = one_template(text)
    if whole is not None:
        return Condition(text, (whole,), None)
    if len(text) > MAX_LENGTH:
        raise TemplateError(f"when: a condition of {len(text)} characters is longer than "
                            f"{MAX_LENGTH}: compute it in a node and test its output")
    if _SLOT in TEMPLATE.sub("", text):
        raise TemplateError(f"when: {_short(text)}: {_SLOT!r} is a name of durable's own")
    found: list[str] = []

    def slot(match: Any) -> str:
        found.append(match.group(1))
        return f" {_SLOT}{len(found) - 1} "

    source = TEMPLATE.sub(slot, text)
    if not found:
        raise TemplateError(
            "when: must be a template such as '{{ input.flag }}', a comparison such as "
            f"'{{{{ input.amount }}}} > 100', or true/false; got {text!r}"
        )
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        raise TemplateError(f"when: {_short(text)} cannot be parsed: {HINT}") from None
    except (RecursionError, MemoryError):
        raise TemplateError(f"when: {_short(text)} is nested too deeply") from None
    _check(tree, text, found)
    return Condition(text, tuple(found), tree)


def _check(tree: ast.expr, text: str, found: list[str]) -> None:
    def shown(node: ast.AST) -> str:
        code = ast.unparse(node)
        for index in reversed(range(len(found))):  # _10 before _1
            code = code.replace(f"{_SLOT}{index}", f"{{{{ {found[index]} }}}}")
        return code

    if _depth(tree) > MAX_DEPTH:
        raise TemplateError(f"when: {_short(text)} is nested more than {MAX_DEPTH} deep")
    for node in ast.walk(tree):
        problem = _problem(node, shown)
        if problem is not None:
            raise TemplateError(f"when: {_short(text)}: {problem}")


def _problem(node: ast.AST, shown: Callable[[ast.AST], str]) -> str | None:
    """What a condition may not hold, if ``node`` is that."""
    if isinstance(node, ast.Name):
        if node.id.startswith(_SLOT) or node.id in _NAMES:
            return None
        return (f"{node.id!r} is neither a template nor a literal (quote a string: 'gold'; "
                "read a value with {{ input.x }})")
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            return f"{node.value!r} is not a literal it takes"
        if isinstance(node.value, str) and _SLOT in node.value:
            return ("a template inside quotes is not compared as its value: leave the quotes "
                    "out ({{ input.t }} == 'x' compares the value as it is)")
        return None
    if isinstance(node, ast.Compare):
        wrong = [op for op in node.ops if type(op) not in _COMPARE]
        return (f"operator {type(wrong[0]).__name__} is not one it takes "
                "(== != < <= > >= in, not in)") if wrong else None
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub):
        return f"operator {type(node.op).__name__} is not one it takes (not, and, or)"
    if not isinstance(node, ast.BoolOp | ast.UnaryOp | ast.List | ast.Tuple | ast.Load
                      | ast.And | ast.Or | ast.Not | ast.USub | ast.cmpop):
        return f"{shown(node)!r} is not allowed: {HINT}"
    return None


def _short(text: str) -> str:
    return repr(text) if len(text) <= 100 else repr(text[:97] + "...")


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _evaluate(node: ast.expr, values: list[Any], where: str) -> Any:
    if isinstance(node, ast.Name):
        if node.id.startswith(_SLOT):
            return values[int(node.id[len(_SLOT):])]
        return _NAMES[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(e, values, where) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values, where)
        if isinstance(node.op, ast.Not):
            return not truthy(operand)
        return _apply(operator.neg, operand, None, "-", where, unary=True)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(truthy(_evaluate(v, values, where)) for v in node.values)
        return any(truthy(_evaluate(v, values, where)) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values, where)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values, where)
            symbol, compare = _COMPARE[type(op)]
            if not _apply(compare, left, right, symbol, where):
                return False
            left = right
        return True
    raise TemplateError(f"{where}: cannot evaluate {ast.unparse(node)!r}")  # _check stops it


def _apply(
    fn: Callable[..., Any], left: Any, right: Any, symbol: str, where: str, unary: bool = False
) -> Any:
    try:
        return fn(left) if unary else fn(left, right)
    except TypeError:
        shown = f"{symbol}{left!r}" if unary else f"{left!r} {symbol} {right!r}"
        raise TemplateError(
            f"{where}: cannot evaluate {shown} ({_kind(left)}"
            + ("" if unary else f" and {_kind(right)}") + ")"
        ) from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
