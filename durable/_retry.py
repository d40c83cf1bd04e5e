"""Retrying a failed run: it goes on from where it failed, its recorded steps kept."""

from __future__ import annotations

import json

from durable._errors import ConfigurationError, RunNotFound
from durable.world import NewEvent, RunRecord, World


def retry_run(world: World, run_id: str, owner: str, lease_ttl: float) -> RunRecord:
    """Make a failed run run again; returns it leased to ``owner``, to execute or release.

    Its finished steps are replayed from the log, not run again. The step whose failure failed
    the run (its exception left the workflow) runs again from its first attempt; a run that
    failed otherwise (a ``NonDeterminismError``, an error of the workflow's own code) replays
    with the code as it is now. Nothing recorded is removed: a ``run_retried`` event is added.

    Raises:
        RunNotFound: no such run.
        ConfigurationError: the run is not ``failed``, or is a child run (retry its parent's
            workflow differently: a parent has already taken the child's failure).
    """
    record = world.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    _check_retriable(record)
    reopened = world.reopen(run_id, owner, lease_ttl)
    if reopened is None:  # it changed meanwhile
        record = world.get_run(run_id) or record
        _check_retriable(record)
        raise ConfigurationError(f"run {run_id} could not be reopened; try again")
    failure = _failure(record)
    step = failure.get("step")
    retried = {
        "steps": [step] if isinstance(step, str) else [],
        "error": f"{failure.get('type', 'Exception')}: {failure.get('message', '')}",
    }
    world.append(run_id, owner, [NewEvent("run_retried", data=json.dumps(retried).encode())])
    return reopened


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


def _failure(record: RunRecord) -> dict[str, object]:
    try:
        info = json.loads(record.error or b"{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}
