"""Runtime-defined workflows: DAGs of handler nodes, written as JSON/YAML, run durably.

A spec lists ``nodes`` (``id``, ``handler``, ``dependencies``, ``config`` and optionally
``retry``, ``when``, ``on_failure``, ``trigger``) plus an optional ``input`` schema, ``defaults``
and ``output``. Config strings may hold templates (``{{ input.x }}``, ``{{ node.output.a[0] }}``)
naming the run input or an ancestor's output. :func:`start` validates the spec and runs it as
one durable workflow (``durable.dag``): nodes run wave by wave, each wave's nodes concurrently
as steps named after their handlers.
"""

from durable.dag._handlers import HttpStatusError, handler, registered
from durable.dag._run import DagNodeFailed, dag_workflow, node_prefixes, run, start
from durable.dag._spec import DagSpec, NodeSpec, load_file
from durable.dag._templates import TemplateError
from durable.dag._validate import DagValidationError, Problem, validate, waves

__all__ = [
    "DagNodeFailed",
    "DagSpec",
    "DagValidationError",
    "HttpStatusError",
    "NodeSpec",
    "Problem",
    "TemplateError",
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
