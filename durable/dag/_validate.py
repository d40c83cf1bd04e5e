"""Validation of a DAG spec before anything runs: every problem at once, each with its node."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from durable._decorators import lookup_workflow, registered_workflows
from durable._durations import parse_duration
from durable._errors import DurableError, InvalidDuration
from durable.dag import _handlers
from durable.dag._conditions import compile_condition
from durable.dag._schema import (
    MissableProperty,
    default_problems,
    missable_property,
    schema_problems,
)
from durable.dag._spec import DagSpec, Defaults, NodeSpec, load_file, unnested
from durable.dag._templates import (
    FOREACH_VARS,
    Reference,
    TemplateError,
    one_template,
    parse,
    templates,
    unclosed,
)

__all__ = ["DagValidationError", "Problem", "validate", "waves"]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a spec; ``node`` is the node id (``None`` for the spec itself)."""

    node: str | None
    message: str

    def __str__(self) -> str:
        return f"node {self.node!r}: {self.message}" if self.node is not None else self.message


class DagValidationError(DurableError, ValueError):
    """A DAG spec is invalid; ``problems`` lists every problem found, each with its node id."""

    def __init__(self, problems: list[Problem], of: str = "DAG spec") -> None:
        self.problems = problems
        self.of = of
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid {of} ({len(problems)} problem(s)):\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.of))


def validate(
    raw: Any, *, check_handlers: bool = True, check_inputs: bool | None = None
) -> DagSpec:
    """Check a spec (a dict, or a :class:`DagSpec`) and return it parsed.

    Args:
        raw: the spec.
        check_handlers: report handlers not registered in this process.
        check_inputs: report templates that read an input property the ``input`` schema lets a
            run leave out (it does not declare it, or it is neither ``required`` nor given a
            ``default``), since a run without it fails at that template, and defaults that do not
            fit their schema.
            Default: as ``check_handlers``, whose ``False`` is for the spec a run recorded:
            accepted when the run started, it must go on replaying although these checks came
            later.

    Raises:
        DagValidationError: listing every problem.
    """
    raw = raw.to_json() if isinstance(raw, DagSpec) else unnested(raw)
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise DagValidationError([Problem(None, f"a spec is an object, got {_kind(raw)}")])
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, list):
        problems.append(Problem(None, "'nodes' must be a list of nodes"))
        raw_nodes = []
    elif not raw_nodes:
        problems.append(Problem(None, "'nodes' is empty: a DAG needs at least one node"))
    top: DagSpec | None = None
    broken: set[object] = set()  # top-level fields that did not parse
    try:
        top = DagSpec.model_validate({**raw, "nodes": []})
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, None, "spec"))
        broken = {err["loc"][0] for err in exc.errors() if err["loc"]}
    nodes, unparsed, duplicates = _parse_nodes(raw_nodes, problems)
    # The input schema and the output are checked even when another field (defaults, say) is
    # broken: every problem is reported at once.
    schema = top.input if top is not None else raw.get("input")
    reads: dict[str, Any] | None = None  # the schema optional input reads are checked against
    if "input" not in broken:
        schema_errors = list(_check_schema(schema, "input"))
        problems.extend(schema_errors)
        inputs = check_handlers if check_inputs is None else check_inputs
        if inputs and isinstance(schema, dict):
            if not schema_errors:
                problems.extend(Problem(None, p) for p in default_problems(schema, "input"))
            reads = schema  # its properties are declared even if a keyword is unsupported
    _check_graph(nodes, unparsed, problems, check_handlers, reads)
    for twin in duplicates:  # left out of the graph, its own handlers are still checked
        if twin.handler != _UNPARSED:
            problems.extend(_handler_problems(twin.id, twin.handler, twin.config, check_handlers))
        problems.extend(_node_field_problems(twin, check_handlers, set()))
    ids = frozenset(n.id for n in nodes)
    output = top.output if top is not None else raw.get("output")
    if output is not None and "output" not in broken:
        problems.extend(_template_problems(output, ids, None, "output", schema=reads))
    defaults = top.defaults if top is not None else _defaults(raw.get("defaults"))
    _check_compensation(nodes, unparsed, defaults, problems)
    if problems:
        raise DagValidationError(problems)
    assert top is not None
    return top.model_copy(update={"nodes": nodes})


def _handler_problems(
    node_id: str, name: str, config: dict[str, Any], check: bool, what: str = ""
) -> Iterable[Problem]:
    """An unknown handler, or a built-in handler's missing required config keys."""
    found = _handlers.lookup(name)
    if found is None:
        if check:
            known = ", ".join(_handlers.registered())
            yield Problem(node_id, f"{what}unknown handler {name!r} (registered: {known}); "
                          "import the module that defines it (CLI: -m MODULE)")
        return
    # The handler's parameters (a built-in's keys) must take the config's keys, or every
    # attempt of the node would fail the same way (or a built-in ignore a misspelt option).
    problem = _handlers.config_problem(found, list(config))
    if problem is not None:
        yield Problem(node_id, f"{what}{problem}")
    if found.fn.__module__ != _handlers.__name__:
        return  # a user handler (or one registered under a built-in's name)
    for key in _handlers.REQUIRED_CONFIG.get(name, ()):
        if problem is not None and key not in config:
            continue  # the missing argument is the problem just reported
        if config.get(key) in (None, ""):
            yield Problem(node_id, f"{what}handler {name!r} needs config {key!r}")
    for key in _DURATIONS.get(name, ()):
        value = config.get(key)
        if value is None or (isinstance(value, str) and _is_template(value)):
            continue
        try:
            parse_duration(value)
        except (InvalidDuration, TypeError) as exc:
            yield Problem(node_id, f"{what}config {key!r}: {exc}")
    if name == "hook":
        yield from _early_hook_problems(node_id, config, what)
    workflow = config.get("name")
    if (
        check and name == "workflow" and isinstance(workflow, str) and workflow
        and not _is_template(workflow) and lookup_workflow(workflow) is None
    ):
        known = ", ".join(sorted(registered_workflows())) or "none"
        yield Problem(node_id, f"{what}config 'name': no workflow named {workflow!r} is "
                      f"registered (registered: {known}); import the module that defines it "
                      "(CLI: -m MODULE)")


_INPUT_ONLY = re.compile(r"input(?:[.\[]|$)")


def _early_hook_problems(node_id: str, config: dict[str, Any], what: str) -> Iterable[Problem]:
    early = config.get("open_at_start")
    if early is None:
        return
    if not isinstance(early, bool):
        yield Problem(node_id, f"{what}config 'open_at_start' must be true or false, "
                      f"got {early!r}")
        return
    for key in ("token", "timeout"):
        for expr in templates(config.get(key)):
            if not _INPUT_ONLY.match(expr):
                yield Problem(node_id, f"{what}config {key!r}: a hook with 'open_at_start' "
                              f"opens before any node runs, so '{{{{ {expr} }}}}' cannot be "
                              "read then (use the run input, or drop 'open_at_start')")


_DURATIONS = {"sleep": ("duration",), "hook": ("timeout",)}
"""Config keys of built-in handlers that hold durations, checked when they are not templates."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _pydantic_problems(exc: ValidationError, node: str | None, what: str) -> Iterable[Problem]:
    for err in exc.errors():
        loc = [str(part) for part in err["loc"] if part != "nodes"]
        field = ".".join(loc)
        if err["type"] == "extra_forbidden":
            yield Problem(node, f"unknown field {field!r}")
        else:
            where = f"{field}: " if field else f"{what}: "
            message = err["msg"].removeprefix("Value error, ")
            yield Problem(node, f"{where}{message}")


def _defaults(raw: Any) -> Defaults | None:
    """The spec's defaults when another top-level field is broken; ``None`` if they are."""
    try:
        return Defaults.model_validate(raw or {})
    except ValidationError:
        return None


def _parse_nodes(
    raw_nodes: list[Any], problems: list[Problem]
) -> tuple[list[NodeSpec], dict[str, set[str]], list[NodeSpec]]:
    """The nodes, the names of each node's bad fields, and the nodes repeating an earlier id.

    A node with bad fields is kept, parsed without them, so that its id, dependencies and
    templates are still checked (and other nodes naming it are not told it does not exist).
    """
    nodes: list[NodeSpec] = []
    duplicates: list[NodeSpec] = []
    unparsed: dict[str, set[str]] = {}
    seen: set[str] = set()
    kept: set[str] = set()
    for index, item in enumerate(raw_nodes):
        label = item.get("id") if isinstance(item, dict) else None
        name = label if isinstance(label, str) and label else f"#{index}"
        if not isinstance(item, dict):
            problems.append(Problem(name, f"a node is an object, got {_kind(item)}"))
            continue
        if name in seen:  # said even when the node has other problems
            problems.append(Problem(name, "duplicate id"))
        if isinstance(label, str) and label:
            seen.add(label)
        fields: set[str] = set()
        try:
            node = NodeSpec.model_validate(item)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, name, "node"))
            fields = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            partial = _without(item, fields)
            if partial is None:
                continue
            node = partial
        if not _ID.match(node.id):
            problems.append(
                Problem(node.id, "invalid id: use letters, digits, '_' and '-', not starting "
                        "with a digit or '-'")
            )
        if node.id in kept:
            duplicates.append(node)  # reported above
            continue
        kept.add(node.id)
        nodes.append(node)
        if fields:
            unparsed[node.id] = fields
    return nodes, unparsed, duplicates


_UNPARSED = "<unparsed>"
"""The handler of a node whose ``handler`` field is bad (never looked up)."""


def _without(item: dict[str, Any], fields: set[str]) -> NodeSpec | None:
    """The node without its bad fields; ``None`` if its id is one of them."""
    if "id" in fields:
        return None
    rest = {key: value for key, value in item.items() if key not in fields}
    if "handler" in fields:
        rest["handler"] = _UNPARSED
    try:
        return NodeSpec.model_validate(rest)
    except ValidationError:
        return None


def _check_graph(
    nodes: list[NodeSpec],
    unparsed: dict[str, set[str]],
    problems: list[Problem],
    check_handlers: bool,
    schema: dict[str, Any] | None,
) -> None:
    ids = {n.id for n in nodes}
    for node in nodes:
        if node.handler != _UNPARSED:
            problems.extend(_handler_problems(node.id, node.handler, node.config,
                                              check_handlers))
        problems.extend(_node_field_problems(node, check_handlers, unparsed.get(node.id, set())))
        counted: set[str] = set()
        for dep in node.dependencies:
            if dep == node.id:
                problems.append(Problem(node.id, "depends on itself"))
            elif dep not in ids:
                problems.append(Problem(node.id, f"unknown dependency {dep!r}"))
            elif dep in counted:
                problems.append(Problem(node.id, f"dependency {dep!r} is listed twice"))
            counted.add(dep)
        problems.extend(_id_and_when_problems(node))
    order = _topological(nodes)
    if len(order) < len(nodes):
        for cycle in _cycles(nodes, set(order)):
            problems.append(Problem(cycle[0], f"cycle: {' -> '.join(cycle)}"))
    ancestors = _Ancestors(nodes, order)
    frozen = frozenset(ids)
    for node in nodes:
        # A node whose foreach did not parse may still have meant {{ item }} in its config.
        fans_out = node.foreach is not None or "foreach" in unparsed.get(node.id, ())
        variables = FOREACH_VARS if fans_out else frozenset()
        problems.extend(_template_problems(node.config, frozen, node, "config", ancestors,
                                           variables=variables, schema=schema))
        for value, what in ((node.when, "when"), (node.foreach, "foreach")):
            problems.extend(_template_problems(value, frozen, node, what, ancestors,
                                               schema=schema))
        if node.compensate is not None:
            problems.extend(_template_problems(node.compensate.config, frozen, node,
                                               "compensate.config", ancestors, allow_self=True,
                                               schema=schema, undoes_fan_out=fans_out))


def _id_and_when_problems(node: NodeSpec) -> Iterable[Problem]:
    if node.id in FOREACH_VARS:
        yield Problem(node.id, f"the id {node.id!r} is reserved for the element a 'foreach' "
                      "node runs on: rename the node")
    if isinstance(node.when, str):
        try:
            compile_condition(node.when)
        except TemplateError as exc:
            yield Problem(node.id, str(exc))


def _node_field_problems(
    node: NodeSpec, check_handlers: bool, unparsed: set[str]
) -> Iterable[Problem]:
    """Problems with ``foreach``, ``max_concurrency``, ``timeout``, ``retry``, ``compensate``."""
    if isinstance(node.foreach, str) and not _is_one_template(node.foreach):
        yield Problem(node.id, "foreach: must be a template such as '{{ input.items }}' "
                      "(resolving to a list) or a list")
    if node.foreach is not None and node.handler == "hook" and node.config.get("open_at_start"):
        yield Problem(node.id, "open_at_start: does not apply to a 'foreach' node (it opens "
                      "one hook per element when it runs)")
    if node.max_concurrency is not None and node.foreach is None and "foreach" not in unparsed:
        yield Problem(node.id, "max_concurrency: only applies to a node with 'foreach'")
    found = _handlers.lookup(node.handler)
    if node.timeout is not None and found is not None and found.inline:
        yield Problem(node.id, f"timeout: does not apply to handler {node.handler!r}, which "
                      "runs in the workflow itself (not as a step)")
    if node.retry is not None and found is not None and found.inline:
        yield Problem(node.id, f"retry: does not apply to handler {node.handler!r}, which "
                      "runs in the workflow itself (not as a step); retry inside what it runs")
    if node.compensate is not None:
        yield from _handler_problems(node.id, node.compensate.handler, node.compensate.config,
                                     check_handlers, "compensate: ")


def _is_template(text: str) -> bool:
    return "{{" in text and "}}" in text


def _is_one_template(text: str) -> bool:
    return one_template(text) is not None


def _check_compensation(
    nodes: list[NodeSpec],
    unparsed: dict[str, set[str]],
    defaults: Defaults | None,
    problems: list[Problem],
) -> None:
    """``on_failure: compensate`` with nothing to compensate is a mistake worth reporting."""
    if any(n.compensate is not None for n in nodes):
        return
    if any("compensate" in fields for fields in unparsed.values()):
        return  # a bad compensate action, reported already
    if defaults is not None and defaults.on_failure == "compensate":
        problems.append(Problem(None, "defaults.on_failure: 'compensate' but no node has a "
                                "'compensate' action"))
    for node in nodes:
        if node.on_failure == "compensate":
            problems.append(Problem(node.id, "on_failure: 'compensate' but no node has a "
                                    "'compensate' action"))


class _Ancestors:
    """Ancestor sets, computed (in topological order) only when a template needs one."""

    def __init__(self, nodes: list[NodeSpec], order: list[str]) -> None:
        self._deps = {n.id: n.dependencies for n in nodes}
        self._order = order
        self._sets: dict[str, frozenset[str]] | None = None

    def of(self, node: NodeSpec) -> frozenset[str]:
        if self._sets is None:
            sets: dict[str, frozenset[str]] = {}
            for nid in self._order:
                acc: set[str] = set()
                for dep in self._deps[nid]:
                    if dep in sets:
                        acc.add(dep)
                        acc |= sets[dep]
                sets[nid] = frozenset(acc)
            self._sets = sets
        found = self._sets.get(node.id)
        if found is None:  # in a cycle or after one: follow the dependencies themselves
            seen: set[str] = set()
            stack = list(self._deps[node.id])
            while stack:
                dep = stack.pop()
                if dep not in seen and dep in self._deps:
                    seen.add(dep)
                    stack.extend(self._deps[dep])
            found = self._sets[node.id] = frozenset(seen)
        return found


def _template_problems(
    value: Any,
    ids: frozenset[str],
    node: NodeSpec | None,
    what: str,
    ancestors: _Ancestors | None = None,
    *,
    variables: frozenset[str] = frozenset(),
    allow_self: bool = False,
    schema: dict[str, Any] | None = None,
    undoes_fan_out: bool = False,
) -> Iterable[Problem]:
    owner = node.id if node is not None else None
    refs: list[Reference] = []
    for text in unclosed(value):
        yield Problem(owner, f"{what}: {text!r} opens a template with '{{{{' and never closes "
                      "it with '}}'")
    for expr in templates(value):  # each one on its own: every bad template is reported
        try:
            refs.append(parse(expr, ids, variables))
        except TemplateError as exc:
            message = str(exc)
            if undoes_fan_out and node is not None and _root(expr) in FOREACH_VARS:
                message = (
                    f"'{{{{ {expr} }}}}': a foreach node has one undo action for all its "
                    f"elements, where '{_root(expr)}' is not defined; "
                    f"'{{{{ {node.id}.output }}}}' is the list of their results"
                )
            yield Problem(owner, f"{what}: {message}")
    for ref in refs:
        if ref.is_input:
            missing = missable_property(schema, ref.path) if schema is not None else None
            if missing is not None:
                yield Problem(owner, f"{what}: '{{{{ {ref.text} }}}}' {_missable(missing)}")
            continue
        if ref.is_var or node is None or ancestors is None:
            continue
        if ref.source == node.id:
            if allow_self:
                continue
            yield Problem(owner, f"{what}: '{{{{ {ref.text} }}}}' references the node itself")
        elif ref.source not in node.dependencies and ref.source not in ancestors.of(node):
            yield Problem(
                owner,
                f"{what}: '{{{{ {ref.text} }}}}' references {ref.source!r}, which is not "
                "an ancestor (add it to dependencies)",
            )


def _missable(missing: MissableProperty) -> str:
    """Why a template's read of the run input may fail, and how to make it safe."""
    if missing.declared:
        return (
            f"reads {missing.path}, which the input schema does not require: a run without it "
            "fails here (add it to 'required' or give it a 'default')"
        )
    parent = missing.path.rpartition(".")[0]
    there = f"{parent} declares " + (", ".join(map(str, missing.siblings)) or "no properties")
    return (
        f"reads {missing.path}, which the input schema does not declare ({there}): a run "
        "without it fails here (correct the name if it is a typo, or declare it under "
        "'properties' with a 'default', or add it to 'required')"
    )


def _topological(nodes: list[NodeSpec]) -> list[str]:
    ids = {n.id for n in nodes}
    indegree = {n.id: 0 for n in nodes}
    dependants: dict[str, list[str]] = {n.id: [] for n in nodes}
    for node in nodes:
        for dep in dict.fromkeys(node.dependencies):
            if dep in ids:
                indegree[node.id] += 1
                dependants[dep].append(node.id)
    queue = deque(sorted(nid for nid, degree in indegree.items() if degree == 0))
    order: list[str] = []
    while queue:
        nid = queue.popleft()
        order.append(nid)
        for child in dependants[nid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    return order


def _cycles(nodes: list[NodeSpec], acyclic: set[str]) -> list[list[str]]:
    """One path per cycle among the nodes Kahn's algorithm could not order.

    Self-loops are reported separately.
    """
    deps = {n.id: [d for d in dict.fromkeys(n.dependencies) if d != n.id] for n in nodes}
    remaining = sorted(nid for nid in deps if nid not in acyclic)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    found: list[list[str]] = []
    for start in remaining:
        if state.get(start):
            continue
        path: list[str] = [start]
        stack = [iter(sorted(d for d in deps[start] if d in deps and d not in acyclic))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                # The dependency edges point backwards in execution order: show run order.
                cycle.reverse()
                first = cycle.index(min(cycle))
                cycle = cycle[first:] + cycle[:first]
                found.append([*cycle, cycle[0]])
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(d for d in deps[nxt] if d in deps and d not in acyclic)))
    return found


def parsed(spec: Any) -> DagSpec:
    """A spec given as a :class:`DagSpec`, a dict, or the path of a JSON/YAML file, parsed.

    Raises:
        DagValidationError: it is not a valid spec (handlers are not checked).
        ValueError: the file cannot be read.
    """
    if isinstance(spec, DagSpec):
        return spec
    if isinstance(spec, str | Path):
        spec = load_file(spec)
    return validate(spec, check_handlers=False)


def waves(spec: Any) -> list[list[str]]:
    """The nodes grouped by depth, each wave sorted by id: the order a run executes them in.

    A node's wave is one more than its deepest dependency's. ``spec`` may be a
    :class:`DagSpec`, a dict or a file's path.
    """
    spec = parsed(spec)
    order = _topological(spec.nodes)
    deps = {n.id: n.dependencies for n in spec.nodes}
    depth: dict[str, int] = {}
    for nid in order:
        depth[nid] = 1 + max((depth[d] for d in deps[nid]), default=-1)
    result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for nid in sorted(depth):
        result[depth[nid]].append(nid)
    return result


def _check_schema(schema: Any, where: str) -> Iterable[Problem]:
    return (Problem(None, problem) for problem in schema_problems(schema, where))


def _root(expr: str) -> str:
    """The name a template expression starts with (``item`` in ``item.id``)."""
    return re.split(r"[.\[\s|]", expr.strip(), maxsplit=1)[0]
