"""Handlers for the DAG examples: the seeds' math tasks and the A -> (B1, B2, B3) -> C tasks.

Import this module before running ``examples/dag_math.json`` or ``examples/dag_fanout.yaml``
(``durable dag run examples/dag_math.json -m examples.dag_handlers --wait``).
"""

from __future__ import annotations

from typing import Any

import durable.dag


@durable.dag.handler("add")
def add(a: float, b: float) -> float:
    return a + b


@durable.dag.handler("subtract")
def subtract(a: float, b: float) -> float:
    return a - b


@durable.dag.handler("multiply")
def multiply(a: float, b: float) -> float:
    return a * b


@durable.dag.handler("divide")
def divide(a: float, b: float) -> float:
    return a / b


@durable.dag.handler("task")
def task(name: str, received: Any = None) -> dict[str, Any]:
    """One task of the fan-out example: reports its name and what it received."""
    return {"task": name, "received": received}
