"""Retrying a failed run: it goes on from where it failed, its recorded steps kept."""

from __future__ import annotations

import json
from collections.abc import Sequence

from durable._deadlines import deadline_of
from durable._errors import ConfigurationError, RunNotFound
from durable._serialization import json_object
from durable.world import Event, NewEvent, RunRecord, World


def retry_run(world: World, run_id: str, owner: str, lease_ttl: float) -> RunRecord:
    """Make a failed run run again; returns it leased to ``owner``, to execute or release.

    Its finished steps are replayed from the log, not run again. The steps whose failure failed
    the run (one, or several branches of a ``parallel``/``map`` group or a DAG) run again from
    their first attempt; a run that failed otherwise (a ``NonDeterminismError``, an error of the
    workflow's own code) replays with the code as it is now. Nothing recorded is removed: a
    ``run_retried`` event is added.

    Raises:
        RunNotFound: no such run.
        ConfigurationError: the run is not ``failed``, is a child run, is past its timeout, or
            went on after its step failed (it compensated: a step that succeeds now would not
            match what it recorded), or was waiting on a hook or a child run then.
    """
    record = world.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    _check_retriable(record)
    steps = steps_to_retry(run_id, world.read_events(run_id))
    failure = json_object(record.error)
    if not steps and failure.get("type") in ("HookTimeout", "durable.HookTimeout"):
        raise ConfigurationError(
            f"run {run_id} failed because a hook timed out ({failure.get('message', '')}): "
            "retried, it would replay the timeout and fail again; start a new run"
        )
    deadline = deadline_of(record)
    if deadline is not None and world.now() >= deadline:
        raise ConfigurationError(
            f"run {run_id} is past its timeout: retried, it would end cancelled at once; start "
            "a new run"
        )
    reopened = world.reopen(run_id, owner, lease_ttl)
    if reopened is None:  # it changed meanwhile
        _check_retriable(world.get_run(run_id) or record)
        raise ConfigurationError(f"run {run_id} could not be reopened; try again")
    world.append(run_id, owner, [_retried(steps, failure)])
    return reopened


def finish_retry(world: World, run_id: str, owner: str, events: Sequence[Event]) -> list[Event]:
    """Record the ``run_retried`` of a retry that reopened the run and stopped before writing it.

    A run reopened and leased (``running``) whose log still ends with ``run_failed`` is one:
    its retrier crashed in between, and a replay would raise the recorded failure again. The
    worker that took the run over writes the event the retry would have, from the log alone.

    Returns:
        The run's log with the event.
    """
    steps = steps_to_retry(run_id, events)
    world.append(run_id, owner, [_retried(steps, json_object(events[-1].data))])
    return world.read_events(run_id)


def _retried(steps: list[str], failure: dict[str, object]) -> NewEvent:
    retried = {
        "steps": steps,
        "error": f"{failure.get('type', 'Exception')}: {failure.get('message', '')}",
    }
    return NewEvent("run_retried", data=json.dumps(retried).encode())


FAILURE_PASSED = "dag_node_failed"
"""A value recorded in a branch whose step failed for good and which the run went past (a DAG
node under ``on_failure: continue``): a retry leaves that failure as it is."""


def steps_to_retry(run_id: str, events: Sequence[Event]) -> list[str]:
    """The steps whose final failure a retry forgets (see :func:`retry_run`).

    Raises:
        ConfigurationError: retrying could not go on from where the run failed.
    """
    start = max((i + 1 for i, e in enumerate(events) if e.kind == "run_retried"), default=0)
    tail = events[start:]
    _check_nothing_waited(run_id, events)
    failures = _unpassed([e for e in tail if e.kind == "step_failed" and e.op_id is not None],
                         tail)
    if not failures:
        return []
    failed = {e.op_id for e in failures if e.op_id is not None}
    first = min(e.seq for e in failures)
    for event in tail:
        op = event.op_id
        if event.seq <= first or op is None or op in failed or _beside(op, failed):
            continue
        if event.kind == "hook_disposed":
            continue  # a wait closed, not work that a step succeeding now could contradict
        raise ConfigurationError(
            f"run {run_id} went on after step {failures[0].name!r} failed (then: {event.kind} "
            f"{event.name or ''} at {op}), as a compensation does: retried, a step that succeeds "
            "now would not match what it recorded after; start a new run"
        )
    return sorted(failed)


def _unpassed(failures: list[Event], events: Sequence[Event]) -> list[Event]:
    """The failures the run did not go past (see :data:`FAILURE_PASSED`)."""
    marks = [(e.seq, e.op_id.rpartition(".")[0] + ".") for e in events
             if e.kind == "value_recorded" and e.name == FAILURE_PASSED and e.op_id]
    return [f for f in failures if not any(
        seq > f.seq and (f.op_id or "").startswith(branch) for seq, branch in marks
    )]


def _beside(op: str, failed: set[str]) -> bool:
    """Whether ``op`` ran beside a failed step: in another branch of its group (parallel, DAG)."""
    parts = op.split(".")
    for other in failed:
        theirs = other.split(".")
        group = theirs[:-2]
        if len(theirs) >= 3 and len(parts) > len(group) + 1 and parts[: len(group)] == group:
            if parts[len(group)] != theirs[len(group)]:
                return True
    return False


def _check_nothing_waited(run_id: str, events: Sequence[Event]) -> None:
    opened = {e.op_id: e for e in events if e.kind in ("hook_created", "child_started")}
    for e in events:
        if e.kind in ("hook_received", "hook_timed_out", "hook_disposed"):
            opened.pop(e.op_id, None)
    if opened:
        what = next(iter(opened.values()))
        waited = "a child run" if what.kind == "child_started" else "a hook"
        raise ConfigurationError(
            f"run {run_id} was waiting on {waited} (at {what.op_id}) when it failed, and a "
            "finished run's hooks are gone: retried, it would wait for ever; start a new run"
        )


def _check_retriable(record: RunRecord) -> None:
    if record.status != "failed":
        raise ConfigurationError(
            f"run {record.id} is {record.status}: only a failed run can be retried"
        )
    if record.parent_id is not None:
        raise ConfigurationError(
            f"run {record.id} is a child of run {record.parent_id}, which has already taken its "
            "failure: retry the parent (if it failed with it) or start the workflow anew"
        )
