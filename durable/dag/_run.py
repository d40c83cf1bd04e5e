"""Executing a DAG spec as one durable workflow, wave by wave."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from durable._api import parallel
from durable._decorators import Step, step, workflow
from durable._errors import DurableError
from durable._options import RetryPolicy
from durable._run import Run
from durable.dag import _handlers
from durable.dag._spec import DagSpec, NodeSpec, load_file
from durable.dag._templates import render
from durable.dag._validate import DagValidationError, Problem, check_input, validate, waves

__all__ = ["DagNodeFailed", "dag_workflow", "node_prefixes", "run", "start"]


class DagNodeFailed(DurableError):
    """A node failed (after its retries) and its ``on_failure`` is ``fail``."""


def _call(handler_name: str, config: dict[str, Any]) -> Any:
    return _handlers.call(handler_name, config)


_steps: dict[tuple[str, RetryPolicy | None], Step[..., Any]] = {}


def _step_for(handler_name: str, retry: RetryPolicy | None) -> Step[..., Any]:
    key = (handler_name, retry)
    found = _steps.get(key)
    if found is None:
        found = step(name=handler_name, retry=retry)(_call)
        _steps[key] = found
    return found


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "null", "none")
    return bool(value)


class _Execution:
    """State of one run: finished nodes' outputs and statuses."""

    def __init__(self, spec: DagSpec, run_input: Any) -> None:
        self.spec = spec
        self.input = run_input
        self.nodes = {n.id: n for n in spec.nodes}
        self.ids = frozenset(self.nodes)
        self.outputs: dict[str, Any] = {}
        self.status: dict[str, str] = {}

    def branch(self, node: NodeSpec) -> Callable[[], tuple[str, Any]]:
        return lambda: self.execute(node)

    def execute(self, node: NodeSpec) -> tuple[str, Any]:
        """Run one node (in its own branch); returns (status, output)."""
        where = f"node {node.id!r}"
        if node.trigger == "all_success" and any(
            self.status[d] != "completed" for d in node.dependencies
        ):
            return "skipped", None
        if node.when is not None:
            cond = node.when
            if not isinstance(cond, bool):
                cond = _truthy(render(cond, self.input, self.outputs, f"{where} when", self.ids))
            if not cond:
                return "skipped", None
        config = render(node.config, self.input, self.outputs, where, self.ids)
        on_failure = node.on_failure or self.spec.defaults.on_failure
        try:
            return "completed", self._invoke(node, config)
        except Exception as exc:
            if on_failure == "continue":
                return "failed", None
            raise DagNodeFailed(
                f"{where} (handler {node.handler!r}) failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _invoke(self, node: NodeSpec, config: dict[str, Any]) -> Any:
        if node.handler == "input":
            return self.input
        found = _handlers.lookup(node.handler)
        if found is not None and found.inline:
            return found.fn(**config)
        retry = node.retry or self.spec.defaults.retry
        return _step_for(node.handler, retry.policy() if retry else None)(node.handler, config)

    def result(self) -> Any:
        if self.spec.output is not None:
            return render(self.spec.output, self.input, self.outputs, "output", self.ids)
        depended = {d for n in self.spec.nodes for d in n.dependencies}
        return {nid: self.outputs[nid] for nid in sorted(self.nodes) if nid not in depended}


@workflow(name="durable.dag")
def dag_workflow(spec: dict[str, Any], input: Any = None) -> Any:  # noqa: A002 - the run input
    """Run a DAG spec: each wave of ready nodes (sorted by id) runs concurrently as steps."""
    parsed = validate(spec)
    errors = check_input(parsed.input, input)
    if errors:
        raise DagValidationError([Problem(None, e) for e in errors])
    state = _Execution(parsed, input)
    for wave in waves(parsed):
        nodes = [state.nodes[nid] for nid in wave]
        results = parallel(*[state.branch(n) for n in nodes])
        for node, (status, output) in zip(nodes, results, strict=True):
            state.status[node.id] = status
            state.outputs[node.id] = output
    return state.result()


def node_prefixes(spec: Any) -> dict[str, str]:
    """Each node's operation-id prefix in a run's event log (``"2.1."``: wave 2, branch 1).

    A node's step is recorded at ``<prefix>1`` (a ``sleep`` node's sleep too), so events can be
    grouped by node.
    """
    parsed = spec if isinstance(spec, DagSpec) else validate(_as_data(spec), check_handlers=False)
    return {
        nid: f"{wave}.{index}."
        for wave, nodes in enumerate(waves(parsed), start=1)
        for index, nid in enumerate(nodes)
    }


def _as_data(spec: Any) -> Any:
    if isinstance(spec, str | Path):
        return load_file(spec)
    if isinstance(spec, DagSpec):
        return spec.to_json()
    return spec


def _prepare(spec: Any, run_input: Any) -> dict[str, Any]:
    parsed = validate(_as_data(spec))
    errors = check_input(parsed.input, run_input)
    if errors:
        raise DagValidationError([Problem(None, e) for e in errors])
    return parsed.to_json()


def start(
    spec: Any,
    input: Any = None,  # noqa: A002 - the run input
    *,
    run_id: str | None = None,
    execute: bool | None = None,
) -> Run:
    """Validate a spec (a dict, :class:`DagSpec`, or path to a JSON/YAML file) and start a run.

    Args:
        spec: the spec.
        input: the run input (``{{ input... }}`` in templates).
        run_id: a caller-chosen run id (starting an existing id returns that run).
        execute: run it in this process (default) or leave it to workers.

    Raises:
        DagValidationError: the spec or the input is invalid (nothing is recorded).
    """
    data = _prepare(spec, input)
    return dag_workflow.with_options(run_id=run_id, execute=execute).start(data, input)


def run(spec: Any, input: Any = None) -> Any:  # noqa: A002
    """Validate a spec, run it to completion and return its output.

    Raises:
        DagValidationError: the spec or the input is invalid.
        WorkflowFailed: a node failed.
    """
    return dag_workflow(_prepare(spec, input), input)
