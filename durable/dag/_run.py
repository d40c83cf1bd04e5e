"""Executing a DAG spec as one durable workflow: each node starts when its dependencies finish."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durable._api import map as durable_map
from durable._api import recorded_value
from durable._context import current_frame
from durable._control import Cancelled
from durable._decorators import Step, step, workflow
from durable._errors import DurableError, HookConflict, InvalidDuration
from durable._graph import run_graph
from durable._hooks import Hook, create_hook
from durable._options import RetryPolicy
from durable._retry import FAILURE_PASSED
from durable._run import Run
from durable._saga import (
    CompensationFailed,
    cancelled_meanwhile,
    compensating,
    note_undo_failures,
)
from durable.dag import _handlers
from durable.dag._conditions import compile_condition
from durable.dag._handlers import HandlerConfigError
from durable.dag._schema import check_input, with_defaults
from durable.dag._spec import DagSpec, NodeSpec, RetrySpec, load_file
from durable.dag._templates import TemplateError, render
from durable.dag._validate import DagValidationError, Problem, validate, waves

__all__ = ["DagNodeFailed", "dag_workflow", "node_prefixes", "run", "start"]

log = logging.getLogger("durable")


class DagNodeFailed(DurableError):
    """A node failed (after its retries) and its ``on_failure`` is ``fail`` or ``compensate``."""


def _call(handler_name: str, config: dict[str, Any]) -> Any:
    return _handlers.call(handler_name, config)


def _call_timed(handler_name: str, config: dict[str, Any], timeout: float) -> Any:
    return _handlers.call(handler_name, config, timeout)


NODE_FAILED = FAILURE_PASSED
"""Name of the recorded value that holds the error of a node whose failure the run went past."""

_steps: dict[tuple[str, RetryPolicy | None, bool], Step[..., Any]] = {}


def _step_for(handler_name: str, retry: RetryPolicy | None, timed: bool) -> Step[..., Any]:
    key = (handler_name, retry, timed)
    found = _steps.get(key)
    if found is None:
        found = step(name=handler_name, retry=retry)(_call_timed if timed else _call)
        _steps[key] = found
    return found


class _Execution:
    """State of one run: finished nodes' outputs and statuses."""

    def __init__(self, spec: DagSpec, run_input: Any) -> None:
        self.spec = spec
        self.input = run_input
        self.order = [nid for wave in waves(spec) for nid in wave]
        """Nodes in wave order (by id within a wave): their branch positions in the log."""
        self.nodes = {n.id: n for n in spec.nodes}
        self.ids = frozenset(self.nodes)
        self.outputs: dict[str, Any] = {}
        self.status: dict[str, str] = {}
        self.errors: dict[str, DagNodeFailed] = {}
        """Failures that stop the run (``on_failure`` ``fail`` or ``compensate``)."""
        self.stopped: set[str] = set()
        """Nodes downstream of such a failure: none of them starts, whatever its trigger."""
        self.early_hooks: dict[str, Hook[Any]] = {}
        self.partial: dict[str, list[Any]] = {}
        """Foreach nodes some elements of which failed: the results, null for those."""
        self.partly_done: set[str] = set()
        """Foreach nodes some elements of which failed and some succeeded (their undo runs)."""
        self._lock = threading.Lock()

    @property
    def completed(self) -> list[str]:
        """Completed nodes in wave order: the same on every replay, whatever finished first."""
        return [nid for nid in self.order if self.status.get(nid) == "completed"]

    @property
    def undoable(self) -> list[str]:
        """Completed nodes, and foreach nodes some elements of which succeeded, in wave order."""
        return [nid for nid in self.order
                if self.status.get(nid) == "completed" or nid in self.partly_done]

    def run_all(self) -> None:
        """Run every node as soon as its dependencies finish, then fail the run if one failed.

        Nodes that do not depend on a failed node still run to the end.
        """
        self._open_hooks_at_start()
        position = {nid: index for index, nid in enumerate(self.order)}
        nodes = [self.nodes[nid] for nid in self.order]
        run_graph(
            [self.branch(node) for node in nodes],
            [[position[dep] for dep in node.dependencies] for node in nodes],
            self.spec.max_concurrency,
        )
        failed = [nid for nid in self.order if nid in self.errors]
        if not failed:
            return
        error = self.errors[failed[0]]
        if any(self._on_failure(self.nodes[nid]) == "compensate" for nid in failed):
            self.compensate(error)
        raise error

    def _open_hooks_at_start(self) -> None:
        """Open the hooks of ``open_at_start`` hook nodes before any node runs.

        A payload sent before such a node is reached (the link an earlier node mailed, clicked
        at once) is kept for it; the hook's timeout counts from the run's start.
        """
        for nid in self.order:
            node = self.nodes[nid]
            if not _opens_at_start(node):
                continue
            config = self._render(node.config, f"node {nid!r}")
            token = config.get("token")
            try:
                if not isinstance(token, str) or not token:
                    raise HandlerConfigError(
                        f"hook handler: 'token' must be a non-empty string, got {token!r}"
                    )
                self.early_hooks[nid] = create_hook(token, timeout=config.get("timeout"))
            except (HookConflict, InvalidDuration, HandlerConfigError) as exc:
                raise _failed(f"node {nid!r} (handler 'hook'): {exc}", exc) from exc

    def branch(self, node: NodeSpec) -> Callable[[], None]:
        def run() -> None:
            status, output = self.execute(node)
            early = self.early_hooks.get(node.id)
            if early is not None and status == "skipped" and node.id not in self.stopped:
                # Skipped whatever happens (its condition, its dependencies' own outcomes):
                # nobody may answer it now. A node a failure stopped keeps its hook, as a run
                # that failed waiting on one does (a retry is refused, not left waiting).
                early.dispose()
            with self._lock:
                self.status[node.id] = status
                self.outputs[node.id] = output

        return run

    def _on_failure(self, node: NodeSpec) -> str:
        return node.on_failure or self.spec.defaults.on_failure

    def execute(self, node: NodeSpec) -> tuple[str, Any]:
        """Run one node (in its own branch); returns (status, output)."""
        where = f"node {node.id!r}"
        if any(d in self.errors or d in self.stopped for d in node.dependencies):
            self.stopped.add(node.id)  # before this branch ends: its dependents see it
            return "skipped", None  # the run fails: nothing downstream of the failure starts
        if node.trigger == "all_success" and any(
            self.status[d] != "completed" for d in node.dependencies
        ):
            return "skipped", None
        try:
            if node.when is not None and not self._holds(node.when, where):
                return "skipped", None
            if node.foreach is None:
                output = self._invoke(node, self._render(node.config, where))
            else:
                output = self._fan_out(node, where)
        except _SPEC_ERRORS as exc:
            # The spec does not fit the data (a template, a duration the input gave, a config
            # the handler does not take, a hook token another run holds): the run fails
            # whatever on_failure says, for a typo must not pass for the business outcome a
            # failure leads to (a timeout, say); but a node that compensates still undoes what
            # completed before it.
            if self._on_failure(node) != "compensate":
                if isinstance(exc, TemplateError):
                    raise
                raise _failed(f"{where} (handler {node.handler!r}): {exc}", exc) from exc
            self.errors[node.id] = _failed(f"{where}: {exc}", exc)
            return "failed", None
        except _ElementsFailed as exc:
            with self._lock:
                self.partial[node.id] = exc.results
                if any(exc.succeeded):
                    self.partly_done.add(node.id)
            failed = f" ({exc.succeeded.count(False)} of {len(exc.succeeded)} elements failed)"
            return self._failure(node, exc.first, exc.results, failed)
        except Exception as exc:
            return self._failure(node, exc, None)
        return "completed", output

    def _failure(
        self, node: NodeSpec, exc: Exception, output: Any, detail: str = ""
    ) -> tuple[str, Any]:
        """A node failed (after its retries): recorded as failed, or failing the run."""
        if self._on_failure(node) == "continue":
            self._note_failure_passed(node, exc)
            return "failed", output
        message = (f"node {node.id!r} (handler {node.handler!r}) failed: "
                   f"{type(exc).__name__}: {exc}{detail}")
        self.errors[node.id] = _failed(message, exc)
        return "failed", output

    def _absent(self) -> frozenset[str]:
        with self._lock:
            return frozenset(nid for nid, status in self.status.items()
                             if status != "completed" and nid not in self.partial)

    def _render(self, value: Any, where: str, variables: dict[str, Any] | None = None) -> Any:
        with self._lock:
            partial = frozenset(self.partial)
        return render(value, self.input, self.outputs, where, self.ids, variables,
                      self._absent(), partial)

    def _holds(self, when: str | bool, where: str) -> bool:
        if isinstance(when, bool):
            return when
        try:
            condition = compile_condition(when)
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        return condition.evaluate(
            lambda expr: self._render(f"{{{{ {expr} }}}}", f"{where} when"), where
        )

    def _note_failure_passed(self, node: NodeSpec, exc: Exception) -> None:
        # The run goes on past this failure: recorded in the node's branch, so that a retry of
        # the run does not run the node again (the nodes after it already saw it fail), and so
        # that inspect shows an inline handler's error (a hook that timed out leaves no step).
        error = {"type": type(exc).__name__, "message": str(exc)}
        recorded_value(NODE_FAILED, lambda: error)

    def _fan_out(self, node: NodeSpec, where: str) -> list[Any]:
        items = self._render(node.foreach, f"{where} foreach")
        if not isinstance(items, list):
            shown = f" ({node.foreach})" if isinstance(node.foreach, str) else ""
            raise TemplateError(
                f"{where}: foreach{shown} must resolve to a list, got {_kind(items)}"
            )

        def one(entry: tuple[int, Any]) -> tuple[bool, Any]:
            index, item = entry
            variables = {"item": item, "index": index}
            config = self._render(node.config, f"{where} [{index}]", variables)
            try:
                return True, self._invoke(node, config)
            except _SPEC_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - the others' results are kept (see below)
                return False, exc

        outcomes: list[tuple[bool, Any]] = durable_map(
            one, list(enumerate(items)), node.max_concurrency
        )
        if all(ok for ok, _ in outcomes):
            return [value for _, value in outcomes]
        # What the elements that succeeded returned stays the node's output (null for each
        # failed one): an all_done node counts the answers, an undo action undoes them.
        raise _ElementsFailed(outcomes)

    def _invoke(self, node: NodeSpec, config: dict[str, Any]) -> Any:
        early = self.early_hooks.get(node.id)
        if early is not None:
            payload = early.wait()
            early.dispose()
            return payload
        return self._call_handler(node.handler, config, node.retry, node.timeout_seconds())

    def _call_handler(
        self, name: str, config: dict[str, Any], retry: RetrySpec | None, timeout: float | None
    ) -> Any:
        if name == "input":
            return self.input
        found = _handlers.lookup(name)
        if found is not None and found.inline:
            problem = _handlers.config_problem(found, list(config))
            if problem is not None:
                raise HandlerConfigError(problem)
            return found.fn(**config)
        retry = retry or self.spec.defaults.retry
        policy = retry.policy() if retry else None
        if timeout is not None:
            return _step_for(name, policy, True)(name, config, timeout)
        return _step_for(name, policy, False)(name, config)

    def compensate(self, error: DagNodeFailed | None) -> None:
        """Run the completed nodes' ``compensate`` actions in reverse wave order, each as a step.

        Raises:
            CompensationFailed: some undo actions failed (after their retries; the others
                still ran), raised from ``error``.
        """
        failures: list[str] = []
        for nid in reversed(self.undoable):
            undo = self.nodes[nid].compensate
            if undo is None:
                continue
            where = f"node {nid!r} compensate"
            try:
                config = self._render(undo.config, where)
                self._call_handler(undo.handler, config, undo.retry, None)
            except Exception as exc:  # noqa: BLE001 - collected, raised together below
                failures.append(f"{nid} ({undo.handler}): {type(exc).__name__}: {exc}")
        if failures:
            reason = f"{type(error).__name__}: {error}" if error is not None else None
            raise CompensationFailed(failures, reason) from error

    def result(self) -> Any:
        if self.spec.output is not None:
            return self._render(self.spec.output, "output")
        depended = {d for n in self.spec.nodes for d in n.dependencies}
        return {nid: self.outputs[nid] for nid in sorted(self.nodes) if nid not in depended}


class _ElementsFailed(Exception):  # noqa: N818 - internal: carries a foreach node's outcomes
    """Some elements of a foreach node failed; the others' results are kept."""

    def __init__(self, outcomes: list[tuple[bool, Any]]) -> None:
        super().__init__("elements failed")
        self.results = [value if ok else None for ok, value in outcomes]
        self.succeeded = [ok for ok, _ in outcomes]
        self.first: Exception = next(value for ok, value in outcomes if not ok)


_SPEC_ERRORS = (TemplateError, InvalidDuration, HandlerConfigError, HookConflict)
"""The spec does not fit the data: these fail the run whatever ``on_failure`` says."""


def _failed(message: str, cause: Exception) -> DagNodeFailed:
    error = DagNodeFailed(message)
    error.__cause__ = cause
    return error


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@workflow(name="durable.dag")
def dag_workflow(spec: dict[str, Any], input: Any = None) -> Any:  # noqa: A002 - the run input
    """Run a DAG spec: each node runs (as a step) as soon as all its dependencies finished."""
    parsed = _validated_here(spec)
    errors = check_input(parsed.input, input)
    if errors:
        raise DagValidationError([Problem(None, e) for e in errors], "run input")
    state = _Execution(parsed, with_defaults(parsed.input, input))
    try:
        state.run_all()
        # No durable point follows the last nodes but the outcome, which a cancel requested
        # meanwhile would turn into `cancelled` with nothing undone.
        cancelled = cancelled_meanwhile()
        if cancelled is not None:
            raise cancelled
    except Cancelled:
        # Like a saga: the completed nodes' undo actions run before the run ends cancelled (an
        # undo that fails is in the log as a failed step; the run is cancelled all the same).
        with compensating():
            try:
                state.compensate(None)
            except CompensationFailed as failed:
                note_undo_failures(failed.failures)
        raise
    return state.result()


HANDLERS_RECHECK_SECONDS = 10.0
"""How soon a run this process lacks handlers for is due again (for any worker)."""

_reported: set[str] = set()  # runs whose missing handlers this process has logged


def _validated_here(spec: Any) -> DagSpec:
    """The parsed spec, if this process has every handler it names.

    A spec that was valid when the run started only misses handlers here because this worker
    did not import their module: the run is left for a worker that did (it suspends, recording
    nothing, and is due again shortly), as a run of an unknown workflow is.
    """
    parsed = validate(spec, check_handlers=False)  # every other problem raises here
    named = {n.handler for n in parsed.nodes}
    named |= {n.compensate.handler for n in parsed.nodes if n.compensate is not None}
    missing = sorted(name for name in named if _handlers.lookup(name) is None)
    frame = current_frame.get()
    if not missing:
        return parsed
    if frame is None or frame.ctx.pure:
        return validate(spec)  # raises, naming the missing handlers
    ctx = frame.ctx
    if ctx.run_id not in _reported:  # once per run and process: it comes back every 10 s
        _reported.add(ctx.run_id)
        log.warning(
            "run %s needs DAG handlers this process does not have (%s): leaving it for a "
            "worker that imports their module (durable worker durable.dag MODULE)",
            ctx.run_id, ", ".join(missing),
        )
    raise ctx.suspend_until(ctx.clock() + HANDLERS_RECHECK_SECONDS, "missing handlers")


def node_prefixes(spec: Any) -> dict[str, str]:
    """Each node's operation-id prefix in a run's event log (``"1.3."``: the fourth node).

    Nodes are numbered in wave order (by depth, by id within a depth). A node's step is recorded
    at ``<prefix>1`` (a ``sleep`` node's sleep too; a ``foreach`` node's steps under
    ``<prefix>1.``), so events can be grouped by node. Compensation steps are recorded after all
    the nodes, outside every node's prefix. Hooks opened at the start come first
    (:func:`early_hook_ops`): with two of them the prefixes start at ``"3."``.
    """
    parsed = _parsed(spec)
    group = len(early_hook_ops(parsed)) + 1
    order = [nid for wave in waves(parsed) for nid in wave]
    return {nid: f"{group}.{index}." for index, nid in enumerate(order)}


def early_hook_ops(spec: Any) -> dict[str, str]:
    """The operation id of each ``open_at_start`` hook node's hook, by node id.

    These hooks are opened, in wave order, before the nodes' group, which then comes after them
    (``"3.0."`` for the first node when two hooks open at the start).
    """
    parsed = _parsed(spec)
    order = [nid for wave in waves(parsed) for nid in wave]
    nodes = {n.id: n for n in parsed.nodes}
    early = [nid for nid in order if _opens_at_start(nodes[nid])]
    return {nid: str(number) for number, nid in enumerate(early, start=1)}


def _opens_at_start(node: NodeSpec) -> bool:
    return node.handler == "hook" and node.config.get("open_at_start") is True


def _parsed(spec: Any) -> DagSpec:
    return spec if isinstance(spec, DagSpec) else validate(_as_data(spec), check_handlers=False)


def _as_data(spec: Any) -> Any:
    if isinstance(spec, str | Path):
        return load_file(spec)
    if isinstance(spec, DagSpec):
        return spec.to_json()
    return spec


def _prepare(spec: Any, run_input: Any) -> tuple[dict[str, Any], Any, float | None]:
    """The spec as data, the run input with the schema's defaults filled in, and the timeout.

    The run records that input: the one its templates read.
    """
    parsed = validate(_as_data(spec))
    schema = parsed.input
    if run_input is None and isinstance(schema, dict) and schema.get("type") == "object":
        run_input = {}  # no input given: an empty object, which the schema's defaults fill in
    errors = check_input(schema, run_input)
    if errors:
        raise DagValidationError([Problem(None, e) for e in errors], "run input")
    return parsed.to_json(), with_defaults(schema, run_input), parsed.timeout_seconds()


def start(
    spec: Any,
    input: Any = None,  # noqa: A002 - the run input
    *,
    run_id: str | None = None,
    execute: bool | None = None,
) -> Run[Any]:
    """Validate a spec (a dict, :class:`DagSpec`, or path to a JSON/YAML file) and start a run.

    Args:
        spec: the spec.
        input: the run input (``{{ input... }}`` in templates); the properties it leaves out
            that the spec's input schema gives a ``default`` are recorded with it.
        run_id: a caller-chosen run id (starting an existing id returns that run).
        execute: run it in this process or leave it to workers (default: here, unless
            ``durable.configure(worker=False)`` turned this process's worker off).

    Raises:
        DagValidationError: the spec or the input is invalid (nothing is recorded).
    """
    data, filled, timeout = _prepare(spec, input)
    options = dag_workflow.with_options(run_id=run_id, execute=execute, timeout=timeout)
    return options.start(data, filled)


def run(spec: Any, input: Any = None) -> Any:  # noqa: A002
    """Validate a spec, run it to completion and return its output.

    Raises:
        DagValidationError: the spec or the input is invalid.
        WorkflowFailed: a node failed.
    """
    data, filled, timeout = _prepare(spec, input)
    return dag_workflow.with_options(timeout=timeout)(data, filled)
