"""Runtime-defined workflows: DAGs of handler nodes, written as JSON/YAML, run durably.

A spec lists ``nodes`` (``id``, ``handler``, ``dependencies``, ``config`` and optionally
``retry``, ``timeout``, ``when``, ``foreach``, ``max_concurrency``, ``on_failure``,
``compensate``, ``trigger``) plus an optional ``input`` schema, ``defaults`` and ``output``.
Config strings may hold templates (``{{ input.x }}``, ``{{ node.output.a[0] }}``) naming the run
input or an ancestor's output. An input property the run leaves out gets its schema ``default``;
:func:`validate` reports a template reading one that has none and is not ``required``.
:func:`start` validates the spec and runs it as one durable workflow (``durable.dag``): each node
starts as soon as its own dependencies have finished, as a step named after its handler,
concurrently with the other ready nodes.

- ``foreach: "{{ input.items }}"`` runs the handler once per element, concurrently (at most
  ``max_concurrency`` at once), with ``{{ item }}`` and ``{{ index }}`` in its config; the
  node's output is the list of results in element order.
- ``timeout: "30s"`` limits each attempt of the handler; an attempt that exceeds it fails with
  ``TimeoutError`` and is retried per ``retry``.
- ``when`` is a template or a comparison over templates (``"{{ input.amount }} > 100"``); a
  false one skips the node. A ``hook`` node with ``open_at_start: true`` opens its hook when the
  run starts, keeping a payload sent before the node is reached.
- ``compensate: {handler, config, retry}`` is a node's undo action. When a node with
  ``on_failure: compensate`` fails (after its retries), the undo actions of the nodes that
  completed run as steps in reverse wave order (their config may use the node's own output),
  and the run fails with the node's error (or ``CompensationFailed`` if undos failed).
"""

from durable.dag._advice import advice
from durable.dag._handlers import HandlerConfigError, HttpStatusError, handler, registered
from durable.dag._run import DagNodeFailed, dag_workflow, node_prefixes, run, start
from durable.dag._spec import CompensateSpec, DagSpec, NodeSpec, load_file
from durable.dag._templates import TemplateError
from durable.dag._validate import DagValidationError, Problem, validate, waves

__all__ = [
    "CompensateSpec",
    "DagNodeFailed",
    "DagSpec",
    "DagValidationError",
    "HandlerConfigError",
    "HttpStatusError",
    "NodeSpec",
    "Problem",
    "TemplateError",
    "advice",
    "dag_workflow",
    "handler",
    "load_file",
    "node_prefixes",
    "registered",
    "run",
    "start",
    "validate",
    "waves",
]
