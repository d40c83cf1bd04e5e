"""``durable inspect`` for DAG runs (workflow ``durable.dag``): what each node did.

The event log records operations, not nodes, so each node's story is read from the events under
its operation-id prefix (:func:`durable.dag.node_prefixes`). Some nodes leave no events at all:
skipped nodes (``when`` false, or a dependency failed or was skipped under ``all_success``) and
the inline ``input``/``output`` handlers. For those the status is inferred by re-applying the
executor's rules to what the log does show (dependency outcomes, ``when`` rendered against the
recorded outputs); a case the log cannot decide is reported as ``unknown`` rather than guessed,
or, while the run has not finished, as ``not started`` (it may still reach the node).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text

from cli._dag_spec import DAG_WORKFLOW, dag_input, spec_of
from cli._grid import Cell, Column, Grid
from cli._render import STATUS_STYLES
from cli._timeline import Operation, Timeline
from cli._values import JsonValue, compact, decode, error_info, format_duration, iso
from durable._engine import CANCEL_NOTICED
from durable.world import FINISHED_STATUSES, Event, RunRecord, World

if TYPE_CHECKING:  # durable.dag is imported once a run turns out to be a DAG run
    from durable.dag import DagSpec, NodeSpec

__all__ = ["DAG_WORKFLOW", "NodeView", "child_records", "dag_nodes", "node_json", "nodes_table"]

_OUTPUT_LIMIT = 2000
"""Outputs longer than this (as JSON) are left out of ``--json``."""

_SILENT_HANDLERS = frozenset({"input", "output"})
"""Inline handlers that record nothing: a node using one leaves no events even when it ran."""

_STYLES = {**STATUS_STYLES, "skipped": "dim", "not started": "dim", "unknown": "yellow"}

_FINISHED = frozenset({"completed", "failed", "skipped", "unknown"})


@dataclass
class NodeView:
    """One node of a DAG run, as far as the event log tells."""

    id: str
    handler: str
    dependencies: list[str]
    wave: int
    """1 for the nodes that run first."""
    status: str
    """``completed``, ``failed``, ``skipped``, ``running``, ``waiting``, ``not started``,
    ``interrupted`` (the run ended while it was going on) or ``unknown``."""
    attempts: int | None = None
    """Step attempts (for a ``foreach`` node, the most any element took); ``None`` without
    steps."""
    started_at: float | None = None
    finished_at: float | None = None
    output: JsonValue = None
    has_output: bool = False
    """Whether ``output`` is known (a ``null`` output is still an output)."""
    items: int | None = None
    """For ``foreach`` nodes: how many elements."""
    error: dict[str, str] | None = None
    reason: str | None = None
    """Why a node was skipped, or why its status could not be decided."""

    @property
    def duration(self) -> float | None:
        """Seconds from its first operation's start to its last one's end, if both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)


@dataclass
class _Run:
    """What every node's inference needs about the run."""

    record: RunRecord
    spec: DagSpec
    run_input: Any
    prefixes: dict[str, str]
    """Each node's operation-id prefix."""
    ops: dict[str, list[Operation]]
    """Operations by the node whose prefix they fall under."""
    events: dict[str, list[Event]]
    """Events by operation id."""
    children: Mapping[str, RunRecord]
    views: dict[str, NodeView]
    outputs: dict[str, Any]
    stopped: dict[str, str] = field(default_factory=dict)
    """Nodes skipped below a failure that failed the run, and that failed node."""
    early: dict[str, str] = field(default_factory=dict)
    """The hook's operation id of each node whose hook opened at the run's start."""

    @property
    def over(self) -> bool:
        return self.record.status in FINISHED_STATUSES

    def ready(self, node: NodeSpec) -> bool:
        """Whether the node's dependencies have all finished (so it has started, or been skipped).

        A dependency whose status the log cannot decide counts as finished.
        """
        return all(self.views[dep].status in _FINISHED for dep in node.dependencies)

    @property
    def executing(self) -> bool:
        """The run is running, or pending again with nodes already begun (it will resume)."""
        if self.record.status == "running":
            return True
        return self.record.status == "pending" and any(self.ops.values())


def child_records(world: World, record: RunRecord, events: list[Event]) -> dict[str, RunRecord]:
    """The child runs a DAG run started (its ``workflow`` nodes), by id; empty for other runs."""
    if record.workflow_name != DAG_WORKFLOW:
        return {}
    found: dict[str, RunRecord] = {}
    for event in events:
        if event.kind != "child_started":
            continue
        child_id = _data(event).get("run_id")
        child = world.get_run(child_id) if isinstance(child_id, str) else None
        if child is not None:
            found[child.id] = child
    return found


def dag_nodes(
    record: RunRecord,
    events: list[Event],
    timeline: Timeline,
    children: Mapping[str, RunRecord],
) -> list[NodeView] | None:
    """Each node of a DAG run in wave order (by id within a wave); ``None`` for other runs."""
    found = dag_input(record)
    spec = spec_of(record)
    if found is None or spec is None:
        return None
    from durable.dag import node_prefixes, waves
    from durable.dag._run import early_hook_ops

    prefixes = node_prefixes(spec)
    early = early_hook_ops(spec)
    by_op: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.op_id is not None:
            by_op[event.op_id].append(event)
    # A node stopped by the run's cancellation marks where it stopped: that is not its work.
    worked = [op for op in timeline.operations if (op.kind, op.name) != ("value", CANCEL_NOTICED)]
    ops: dict[str, list[Operation]] = {
        nid: [op for op in worked if op.op_id.startswith(prefix) or op.op_id == early.get(nid)]
        for nid, prefix in prefixes.items()
    }
    state = _Run(record, spec, found[1], prefixes, ops, by_op, children, {}, {}, early=early)
    nodes = {n.id: n for n in spec.nodes}
    for number, wave in enumerate(waves(spec), start=1):
        for nid in wave:
            view = _node_view(state, nodes[nid], number)
            state.views[nid] = view
            if view.status == "completed" and view.has_output:
                state.outputs[nid] = view.output
    return list(state.views.values())


def _named_in_error(state: _Run) -> str | None:
    """The node a failed run's error names (``node 'x' ...``), if any."""
    error = error_info(state.record.error)
    if error is None:
        return None
    text = error["message"]
    named = [(text.find(f"node {n.id!r}"), n.id) for n in state.spec.nodes]
    hits = sorted((pos, nid) for pos, nid in named if pos >= 0)
    return hits[0][1] if hits else None


def _node_view(state: _Run, node: NodeSpec, wave: int) -> NodeView:
    view = NodeView(node.id, node.handler, list(node.dependencies), wave, "not started")
    ops = [op for op in state.ops[node.id] if op.op_id != state.early.get(node.id)
           or _took_its_early_hook(state, node, op)]
    if ops:
        _from_operations(state, node, view, ops)
    elif state.ready(node) and (state.record.status != "pending" or state.executing):
        _without_events(state, node, view)
    return view


def _took_its_early_hook(state: _Run, node: NodeSpec, op: Operation) -> bool:
    """Whether a node whose hook opened at the start was reached and waited on it.

    The hook is there from the start; a node that was skipped, or stopped by a failure, before
    it was reached had its hook disposed of, unanswered.
    """
    if not state.ready(node) or _skip_reason(state, node) is not None:
        return False
    kinds = [e.kind for e in state.events[op.op_id]]
    return "hook_received" in kinds or "hook_timed_out" in kinds or kinds[-1] == "hook_created"


# --- nodes with events ---------------------------------------------------------------------


def _from_operations(state: _Run, node: NodeSpec, view: NodeView, ops: list[Operation]) -> None:
    outcomes = [_op_outcome(state, op) for op in ops]
    steps = [op for op in ops if op.kind == "step"]
    # A foreach node's elements are retried each on its own: the most any of them took.
    counts = [len(op.attempts) for op in steps]
    view.attempts = (max(counts) if node.foreach is not None else sum(counts)) if steps else None
    view.started_at = min(op.started_at for op in ops)
    # The log dates an operation from the branch's previous event (it records only ends): a
    # node began no earlier than its last dependency finished.
    ready_at = max(
        (end for dep in node.dependencies if (end := state.views[dep].finished_at) is not None),
        default=None,
    )
    first_end = min((op.finished_at for op in ops if op.finished_at is not None), default=None)
    if ready_at is not None and ready_at > view.started_at and (
        first_end is None or ready_at <= first_end
    ):
        view.started_at = ready_at
    for wanted in ("running", "waiting", "failed", "interrupted"):
        if any(status == wanted for status, _ in outcomes):
            view.status = wanted
            break
    else:
        view.status = "completed"
    if view.status in ("completed", "failed", "interrupted"):
        ends = [op.finished_at for op in ops if op.finished_at is not None]
        view.finished_at = max(ends) if ends else None
    if view.status == "failed":
        errors = [err for status, err in outcomes if status == "failed" and err is not None]
        view.error = errors[0] if errors else _run_error(state)
    if node.foreach is not None:
        _foreach_output(state, node, view, ops)
    elif view.status == "completed":
        _single_output(state, node, view, ops[0])


def _op_outcome(state: _Run, op: Operation) -> tuple[str, dict[str, str] | None]:
    """An operation's part in its node's status, and its error if it failed."""
    if op.kind == "step":
        mapped = {"retrying": "running"}.get(op.status, op.status)
        return mapped, op.error
    if op.kind == "sleep":
        return {"sleeping": "waiting"}.get(op.status, op.status), None
    from durable.dag._run import NODE_FAILED

    last = state.events[op.op_id][-1]
    if op.kind == "value" and op.name == NODE_FAILED:
        error = _data(last)
        return "failed", {"type": str(error.get("type")), "message": str(error.get("message"))}
    if last.kind in ("hook_created", "child_started"):
        return ("interrupted" if state.over else "waiting"), None
    if last.kind == "hook_timed_out":
        return "failed", {"type": "HookTimeout", "message": "the hook timed out"}
    if op.kind == "child":
        return _child_outcome(state, op)
    return "completed", None


def _child_outcome(state: _Run, op: Operation) -> tuple[str, dict[str, str] | None]:
    ended = _data(state.events[op.op_id][-1]).get("status")
    if ended == "completed":
        return "completed", None
    child = state.children.get(_child_id(state, op) or "")
    info = error_info(child.error) if child is not None else None
    error = {"type": info["type"], "message": info["message"]} if info else None
    return "failed", error or {"type": "WorkflowFailed", "message": f"child run {ended}"}


def _child_id(state: _Run, op: Operation) -> str | None:
    child_id = _data(state.events[op.op_id][0]).get("run_id")
    return child_id if isinstance(child_id, str) else None


def _single_output(state: _Run, node: NodeSpec, view: NodeView, op: Operation) -> None:
    view.has_output = True
    if op.kind == "step":
        view.output = op.value
    elif op.kind == "hook":
        received = [e for e in state.events[op.op_id] if e.kind == "hook_received"]
        view.output = decode(received[0].data)[0] if received else None
    elif op.kind == "child":
        child = state.children.get(_child_id(state, op) or "")
        view.has_output = child is not None
        view.output = decode(child.output)[0] if child is not None else None
    else:
        view.output = None  # a sleep's output


def _foreach_output(state: _Run, node: NodeSpec, view: NodeView, ops: list[Operation]) -> None:
    prefix = f"{state.prefixes[node.id]}1."
    results = {op.op_id: op for op in ops if op.kind == "step" and op.status == "completed"}
    items = _foreach_items(state, node)
    view.items = len(items) if items is not None else None
    if items is not None and view.status == "completed":
        element_ids = [f"{prefix}{index}.1" for index in range(len(items))]
        if all(e in results for e in element_ids):
            view.has_output = True
            view.output = [results[e].value for e in element_ids]
        elif state.executing:
            view.status = "running"  # elements not yet started record nothing
            view.finished_at = None


# --- nodes without events -------------------------------------------------------------------


_CANCELLED_FIRST = "the run was cancelled before it started"


def _without_events(state: _Run, node: NodeSpec, view: NodeView) -> None:
    skipped = _skip_reason(state, node)
    if skipped is not None:
        view.status, view.reason = "skipped", skipped
        return
    if _named_in_error(state) == node.id:
        view.status, view.error = "failed", _run_error(state)
        return
    if node.foreach is not None:
        _silent_foreach(state, node, view)
        return
    if node.handler in _SILENT_HANDLERS:
        view.status = "completed"
        _silent_output(state, node, view)
        return
    if state.executing:
        view.status = "running"  # a step records only when it finishes
        return
    if not state.over:
        view.status = "not started"  # the run has not reached it yet (a worker may lack handlers)
        return
    if state.record.status == "cancelled":
        # A cancelled run starts no node after the request (one in flight records its step).
        view.status, view.reason = "skipped", _CANCELLED_FIRST
        return
    if node.when is not None and not isinstance(node.when, bool):
        view.status, view.reason = "skipped", "no events: its when condition must have been false"
        return
    view.status, view.reason = "unknown", "no events recorded for it"


def _skip_reason(state: _Run, node: NodeSpec) -> str | None:
    """Why the executor skipped the node, when the log shows it did."""
    for dep in node.dependencies:
        if state.views[dep].status == "failed" and _stops_the_run(state, dep):
            state.stopped[node.id] = dep
            return f"dependency {dep!r} failed the run"
        origin = state.stopped.get(dep)
        if origin is not None:  # nothing downstream of such a failure starts, whatever its trigger
            state.stopped[node.id] = origin
            return f"node {origin!r} upstream failed the run"
    if node.trigger == "all_success":
        for dep in node.dependencies:
            status = state.views[dep].status
            if status != "completed":
                return f"dependency {dep!r} {status}"
    if node.when is None:
        return None
    if isinstance(node.when, bool):
        return None if node.when else "when is false"
    from durable.dag._conditions import compile_condition
    from durable.dag._templates import TemplateError

    where = f"node {node.id!r}"
    try:
        holds = compile_condition(node.when).evaluate(
            lambda expr: _rendered(state, f"{{{{ {expr} }}}}", f"{where} when", strict=True),
            where,
        )
    except TemplateError:
        return None
    return None if holds else "when was false"


def _stops_the_run(state: _Run, nid: str) -> bool:
    """Whether a failure of this node fails the run (nothing downstream of it then starts)."""
    node = next(n for n in state.spec.nodes if n.id == nid)
    return (node.on_failure or state.spec.defaults.on_failure) != "continue"


def _silent_foreach(state: _Run, node: NodeSpec, view: NodeView) -> None:
    items = _foreach_items(state, node)
    if items is not None and (not items or node.handler in _SILENT_HANDLERS):
        view.status, view.items = "completed", len(items)
        if not items:
            view.output, view.has_output = [], True
        return
    if not state.over:
        view.status = "not started"
        return
    if state.record.status == "cancelled":
        view.status, view.reason = "skipped", _CANCELLED_FIRST
        return
    view.status, view.reason = "unknown", "no events recorded for its elements"


def _silent_output(state: _Run, node: NodeSpec, view: NodeView) -> None:
    if node.handler == "input":
        view.output, view.has_output = state.run_input, True
        return
    config = _rendered(state, node.config, f"node {node.id!r}")
    if config is _UNKNOWN:
        return
    view.has_output = True
    unwrapped = isinstance(config, dict) and set(config) == {"value"}
    view.output = config["value"] if unwrapped else config


def _foreach_items(state: _Run, node: NodeSpec) -> list[Any] | None:
    items = _rendered(state, node.foreach, f"node {node.id!r}")
    return items if isinstance(items, list) else None


_UNKNOWN = object()
"""What :func:`_rendered` returns for a template the log cannot fill in."""


def _rendered(state: _Run, template: Any, where: str, strict: bool = False) -> Any:
    """A template rendered against the run's input and the outputs known so far.

    Unless ``strict`` (then it raises ``TemplateError``), what cannot be rendered is _UNKNOWN.
    """
    from durable.dag._templates import TemplateError, render

    absent = frozenset(nid for nid, view in state.views.items()
                       if view.status in ("skipped", "failed"))
    try:
        return render(template, state.run_input, state.outputs, where, _ids(state),
                      absent=absent)
    except TemplateError:
        if strict:
            raise
        return _UNKNOWN


# --- shared helpers -------------------------------------------------------------------------


def _ids(state: _Run) -> frozenset[str]:
    return frozenset(state.prefixes)


def _run_error(state: _Run) -> dict[str, str] | None:
    info = error_info(state.record.error)
    return None if info is None else {"type": info["type"], "message": info["message"]}


def _data(event: Event) -> dict[str, Any]:
    value, encoding = decode(event.data)
    return value if encoding == "json" and isinstance(value, dict) else {}


# --- output ---------------------------------------------------------------------------------


def _small_output(view: NodeView) -> tuple[JsonValue, bool]:
    """The output for ``--json``, and whether it was left out for its size."""
    if not view.has_output:
        return None, False
    text = json.dumps(view.output, ensure_ascii=False)
    if len(text) > _OUTPUT_LIMIT:
        return None, True
    return view.output, False


def node_json(view: NodeView) -> dict[str, Any]:
    """A node as a JSON object.

    Keys: ``id, handler, dependencies, wave, status, attempts, started_at, finished_at,
    duration`` (seconds), ``items`` (``foreach`` nodes), ``output`` (null when unknown or longer
    than 2,000 characters as JSON; ``output_omitted`` says which), ``error`` (``{type,
    message}``) and ``reason`` (why it was skipped, or why its status is ``unknown``).
    """
    output, omitted = _small_output(view)
    return {
        "id": view.id,
        "handler": view.handler,
        "dependencies": view.dependencies,
        "wave": view.wave,
        "status": view.status,
        "attempts": view.attempts,
        "started_at": iso(view.started_at),
        "finished_at": iso(view.finished_at),
        "duration": view.duration,
        "items": view.items,
        "output": output,
        "output_omitted": omitted,
        "error": view.error,
        "reason": view.reason,
    }


def _preview(view: NodeView) -> Text:
    if view.error is not None:
        return Text(compact(f"{view.error['type']}: {view.error['message']}", 80), style="red")
    if view.reason is not None:
        return Text(view.reason, style="dim")
    if view.items is not None and view.status == "completed":
        return Text(f"{view.items} item{'' if view.items == 1 else 's'}")
    if view.has_output and view.status == "completed":
        return Text(compact(view.output, 60))
    return Text("")


def nodes_table(views: list[NodeView]) -> Grid:
    """The DAG's nodes in wave order: handler, status, attempts, duration, output or error.

    In a narrow terminal the wave, attempts and duration go first, then outputs and errors move
    under their rows (they wrap rather than being cut).
    """
    columns = [
        Column("WAVE", justify="right", drop=1),
        Column("NODE"),
        Column("HANDLER", wrap=True, min_width=8, fold=5),
        Column("STATUS"),
        Column("ATTEMPTS", justify="right", drop=2),
        Column("DURATION", justify="right", drop=3),
        Column("OUTPUT / ERROR", wrap=True, min_width=24, below=4),
    ]
    rows: list[list[Cell]] = [
        [
            str(view.wave),
            view.id,
            view.handler,
            Text(view.status, style=_STYLES.get(view.status, "")),
            "" if view.attempts is None else str(view.attempts),
            format_duration(view.duration) if view.duration is not None else "",
            _preview(view),
        ]
        for view in views
    ]
    return Grid(columns, rows)
