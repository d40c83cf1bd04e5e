"""Branches that start as soon as the branches they depend on have finished (DAG execution).

Like :func:`durable.parallel`, each call is a branch with ids scoped by its position, so replay
does not depend on which branch finishes first; unlike it, a branch waits for the ones it names.
Waiting branches hold no thread: a branch is handed to the pool only once it is ready.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import Context
from typing import TYPE_CHECKING, Any

from durable._api import _SYNC_BRANCH_LIMIT, _branch_context, _collect
from durable._context import current_frame

if TYPE_CHECKING:
    from durable._engine import RunContext

__all__ = ["run_graph"]


def run_graph(
    calls: Sequence[Callable[[], Any]],
    after: Sequence[Sequence[int]],
    limit: int | None = None,
) -> list[Any]:
    """Run ``calls`` as branches; ``calls[i]`` starts once every call in ``after[i]`` returned.

    Args:
        calls: the branches, in a topological order (``after[i]`` names only indices below i).
        after: for each call, the indices of the calls it waits for.
        limit: how many branches run at once (default 32).

    Returns:
        The calls' results in order. A call waiting on one that raised never runs; the group
        then raises as :func:`durable.parallel` does (engine control flow first, then the first
        error in call order), after every branch that could run has finished.
    """
    for index, deps in enumerate(after):
        if any(not 0 <= dep < index for dep in deps):
            raise ValueError(f"branch {index} may only wait for earlier branches, got {deps}")
    frame = current_frame.get()
    ctx, group = (frame.ctx, frame.branch.next_op()) if frame is not None else (None, "")
    _check_group(ctx, group)
    branches = _Branches(calls, [_branch_context(ctx, group, i) for i in range(len(calls))])
    graph = _Graph(after)
    workers = min(len(calls), limit or _SYNC_BRANCH_LIMIT)
    if workers <= 1:
        pending = list(graph.ready)
        while pending:
            index = pending.pop(0)
            pending.extend(graph.finished(index, branches.run(index)))
        return _collect(branches.outcomes)

    first = graph.ready[:workers]  # each takes a thread at once: counted as running from now

    def run(index: int | None, counted: bool = False) -> None:
        # A thread goes on with a branch its own made ready: handing it to the pool would leave
        # a moment with no branch running, which a lingering one (see RunContext.linger) would
        # take for the whole run waiting.
        if ctx is not None and not counted:
            ctx.branch_entered()
        try:
            while index is not None:
                ready = graph.finished(index, branches.run(index))
                index = ready[0] if ready else None
                for other in ready[1:]:
                    pool.submit(run, other)
        finally:
            if ctx is not None:
                ctx.branch_left()

    if ctx is not None:
        ctx.branches_start(len(first))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="durable-node") as pool:
            for index in graph.ready:
                pool.submit(run, index, index in first)
            graph.all_done.wait()
    finally:
        if ctx is not None:
            ctx.branches_done()
    return _collect(branches.outcomes)


class _Branches:
    """The calls, each in its branch's context, and how each ended."""

    def __init__(self, calls: Sequence[Callable[[], Any]], contexts: list[Context]) -> None:
        self.calls = calls
        self.contexts = contexts
        self.outcomes: list[tuple[bool, Any]] = [(True, None)] * len(calls)

    def run(self, index: int) -> bool:
        """Run one branch; returns whether it returned (rather than raised)."""
        try:
            self.outcomes[index] = (True, self.contexts[index].run(self.calls[index]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in order by _collect
            self.outcomes[index] = (False, exc)
        return self.outcomes[index][0]


class _Graph:
    """Which branches are ready, as the others finish (thread-safe)."""

    def __init__(self, after: Sequence[Sequence[int]]) -> None:
        self.waiting = [len(set(deps)) for deps in after]
        self.dependents: list[list[int]] = [[] for _ in after]
        for index, deps in enumerate(after):
            for dep in set(deps):
                self.dependents[dep].append(index)
        self.ready = [index for index, waits in enumerate(self.waiting) if waits == 0]
        self.blocked = [False] * len(after)
        self.left = len(after)
        self.lock = threading.Lock()
        self.all_done = threading.Event()
        if not after:
            self.all_done.set()

    def finished(self, index: int, ok: bool) -> list[int]:
        """Mark a branch finished; returns the branches that may start now."""
        ready: list[int] = []
        with self.lock:
            done = [(index, ok)]
            while done:
                current, current_ok = done.pop()
                self.left -= 1
                for dep in self.dependents[current]:
                    self.blocked[dep] = self.blocked[dep] or not current_ok
                    self.waiting[dep] -= 1
                    if self.waiting[dep] > 0:
                        continue
                    if self.blocked[dep]:
                        done.append((dep, False))  # never runs: its dependency raised
                    else:
                        ready.append(dep)
            if self.left == 0:
                self.all_done.set()
        return ready


def _check_group(ctx: RunContext | None, group: str) -> None:
    if ctx is not None:
        ctx.group_at(group)
