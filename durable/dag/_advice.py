"""What a valid spec does that is seldom meant: said by ``durable dag validate``, not refused."""

from __future__ import annotations

from typing import Any

from durable.dag._validate import Problem, parsed

__all__ = ["advice"]


def advice(spec: Any) -> list[Problem]:
    """Notes on a valid spec (a :class:`DagSpec`, a dict or a file's path), each with its node.

    - A node that waits for a ``continue`` node with the default trigger (``all_success``):
      when that node fails, this one and everything after it is skipped, and the run still
      completes.
    - A ``hook`` node with no timeout in a spec with none: the run waits for ever if nobody
      answers.
    """
    spec = parsed(spec)
    notes: list[Problem] = []
    nodes = {n.id: n for n in spec.nodes}
    for node in spec.nodes:
        if node.trigger != "all_success":
            continue
        for dep in node.dependencies:
            upstream = nodes.get(dep)
            if upstream is None:
                continue
            if (upstream.on_failure or spec.defaults.on_failure) == "continue":
                notes.append(Problem(node.id, (
                    f"when {dep!r} fails (on_failure: continue), {node.id!r} and what follows "
                    "it are skipped and the run still completes; give it trigger: all_done to "
                    "run it anyway"
                )))
    if spec.timeout is None:
        for node in spec.nodes:
            if node.handler == "hook" and node.config.get("timeout") is None:
                notes.append(Problem(node.id, (
                    "a hook with no timeout, in a spec with none: the run waits for ever if "
                    "nobody answers (give the hook a timeout, or the spec one)"
                )))
    return notes
