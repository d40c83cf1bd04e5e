"""What a DAG run's record says about its spec, read without importing ``durable.dag`` up front.

``durable.dag`` builds its pydantic models on import (about a quarter of a second), so it is
imported here only once a run turns out to be a DAG run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cli._values import decode
from durable.world import RunRecord

if TYPE_CHECKING:
    from durable.dag import DagSpec

__all__ = ["DAG_WORKFLOW", "branch_dependencies", "dag_input", "dag_name", "spec_of"]

DAG_WORKFLOW = "durable.dag"
"""The workflow name DAG runs are recorded under."""


def dag_input(record: RunRecord) -> tuple[Any, Any] | None:
    """``(spec, run input)`` as recorded for a DAG run; ``None`` for other runs."""
    if record.workflow_name != DAG_WORKFLOW:
        return None
    return _split(record.input)


def dag_name(record: RunRecord) -> str | None:
    """The ``name`` of the spec a DAG run recorded, if it has one; ``None`` for other runs."""
    found = dag_input(record)
    spec = found[0] if found is not None else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else None


def _split(data: bytes) -> tuple[Any, Any] | None:
    value, encoding = decode(data)
    if encoding != "json" or not isinstance(value, dict):
        return None
    args = value.get("args") or []
    kwargs = value.get("kwargs") or {}
    spec = args[0] if args else kwargs.get("spec")
    run_input = args[1] if len(args) > 1 else kwargs.get("input")
    return spec, run_input


def spec_of(record: RunRecord) -> DagSpec | None:
    """The spec a DAG run recorded, parsed; ``None`` for other runs or an unreadable spec."""
    if record.workflow_name != DAG_WORKFLOW:
        return None
    return _parsed(record.input)


@lru_cache(maxsize=4)
def _parsed(data: bytes) -> DagSpec | None:
    found = _split(data)
    if found is None:
        return None
    from durable.dag import validate

    try:
        return validate(found[0], check_handlers=False)
    except Exception:  # noqa: BLE001 - an unreadable spec falls back to the generic view
        return None


def branch_dependencies(record: RunRecord) -> dict[str, list[str]]:
    """For a DAG run, each node's operation-id prefix and the prefixes of its dependencies.

    Each node runs in a branch of its own, so the log alone does not say that a node's
    operations began only once its dependencies had finished. Empty for other runs.
    """
    spec = spec_of(record)
    if spec is None:
        return {}
    from durable.dag import node_prefixes

    prefixes = node_prefixes(spec)
    return {prefixes[n.id]: [prefixes[d] for d in n.dependencies] for n in spec.nodes}
