"""What a cancelled run records as its error, and the exception its result raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from durable._errors import WorkflowCancelled, WorkflowTimedOut
from durable._serialization import json_object

_DEADLINE = "deadline"
_UNDO_FAILURES = "undo_failures"


def cancellation_data(deadline: float | None, undo_failures: list[str]) -> bytes | None:
    """The error a cancelled run records: why (its timeout) and which undos failed, if any."""
    if deadline is None and not undo_failures:
        return None
    info: dict[str, Any]
    if deadline is not None:
        when = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")
        message = f"still unfinished at its deadline, {when}: cancelled"
        info = {"type": "WorkflowTimedOut", "message": message, _DEADLINE: deadline}
    else:
        info = {"type": "WorkflowCancelled", "message": "cancelled"}
    if undo_failures:
        info["message"] += f"; undo steps failed: {'; '.join(undo_failures)}"
        info[_UNDO_FAILURES] = undo_failures
    return json.dumps(info).encode()


def cancellation_error(
    run_id: str, deadline: float | None, undo_failures: list[str]
) -> WorkflowCancelled:
    """What the result of a run cancelled here raises."""
    if deadline is not None:
        return WorkflowTimedOut(run_id, deadline, undo_failures)
    return WorkflowCancelled(run_id, undo_failures)


def recorded_cancellation(run_id: str, data: bytes | None) -> WorkflowCancelled:
    """What the result of a cancelled run raises, from the error it recorded."""
    info = json_object(data)
    failures = info.get(_UNDO_FAILURES)
    undo_failures = [str(f) for f in failures] if isinstance(failures, list) else []
    return cancellation_error(run_id, deadline_passed(data), undo_failures)


def deadline_passed(data: bytes | None) -> float | None:
    """The deadline of a run cancelled by its timeout, from its recorded error; else None."""
    info = json_object(data)
    if info.get("type") != "WorkflowTimedOut":
        return None
    value = info.get(_DEADLINE)
    return float(value) if isinstance(value, int | float) else None


def undo_failed(data: bytes | None) -> bool:
    """Whether a cancelled run's recorded error lists undo steps that failed."""
    return bool(json_object(data).get(_UNDO_FAILURES))
