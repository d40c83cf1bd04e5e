"""A 10-node DAG whose python/handler nodes leave a durable trace, for the DAG crash test.

Each node attempt appends ``"{run_id} {node} {pid}\\n"`` to the file named by ``DAG_EFFECTS``
(fsynced), then sleeps ``DAG_NODE_DELAY`` seconds (default 0.15), so that a SIGKILL lands while
nodes are in flight. Half the nodes use the built-in ``python`` handler (:func:`python_node`),
the other half the registered handler ``dag_effect``. Every node returns its own value plus the
sum of its inputs, so the run's output checks that outputs flowed along every edge.

Workers import ``durable.dag`` (the DAG workflow) and this module (the handler).
"""

from __future__ import annotations

import os
import time
from typing import Any

import durable
import durable.dag

# start -> (a1, a2, a3) -> b -> (c1, c2) -> d -> (e1, e2) -> f
EDGES: dict[str, list[str]] = {
    "start": [],
    "a1": ["start"],
    "a2": ["start"],
    "a3": ["start"],
    "b": ["a1", "a2", "a3"],
    "c1": ["b"],
    "c2": ["b"],
    "d": ["c1", "c2"],
    "e1": ["d"],
    "e2": ["d"],
    "f": ["e1", "e2"],
}
NODES = list(EDGES)


def _value(node: str) -> int:
    return NODES.index(node) + 1


def _trace(node: str) -> None:
    line = f"{durable.step_info().run_id} {node} {os.getpid()}\n"
    fd = os.open(os.environ["DAG_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    time.sleep(float(os.environ.get("DAG_NODE_DELAY", "0.15")))


def python_node(node: str, inputs: list[int]) -> int:
    """A node run through the built-in ``python`` handler."""
    _trace(node)
    return _value(node) + sum(inputs)


@durable.dag.handler("dag_effect")
def effect_node(node: str, inputs: list[int]) -> int:
    """A node run through a registered handler."""
    _trace(node)
    return _value(node) + sum(inputs)


def spec() -> dict[str, Any]:
    nodes = []
    for index, node in enumerate(NODES):
        config: dict[str, Any] = {
            "node": node,
            "inputs": [f"{{{{ {d}.output }}}}" for d in EDGES[node]],
        }
        if index % 2:
            handler = "dag_effect"
        else:
            handler = "python"
            config["function"] = f"{__name__}:python_node"
        nodes.append(
            {"id": node, "handler": handler, "dependencies": EDGES[node], "config": config}
        )
    return {"name": "dag_crashy", "nodes": nodes, "output": "{{ f.output }}"}


def expected() -> int:
    results: dict[str, int] = {}
    for node in NODES:  # NODES is in topological order
        results[node] = _value(node) + sum(results[d] for d in EDGES[node])
    return results["f"]
