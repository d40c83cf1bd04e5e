"""Workflow timeouts: a run's deadline, recorded with its input, and how it ended by it."""

from __future__ import annotations

import json
from typing import Any

from durable._serialization import loads
from durable.world import RunRecord, World

_KEY = "deadline"


def with_deadline(payload: dict[str, Any], timeout: float | None, world: World) -> dict[str, Any]:
    """The run input ``payload``, with the deadline a ``timeout`` from now if there is one.

    Recorded with the input (not computed again), so that every replay, in any process, sees
    the same deadline.
    """
    if timeout is None:
        return payload
    return {**payload, _KEY: world.now() + timeout}


def deadline_of(record: RunRecord) -> float | None:
    """The deadline recorded with a run's input, if any."""
    if not record.input or _KEY.encode() not in record.input:
        return None  # no decoding on the way of runs without a timeout
    payload = loads(record.input, what=f"input of run {record.id}")
    value = payload.get(_KEY) if isinstance(payload, dict) else None
    return float(value) if isinstance(value, int | float) else None


def arguments_only(recorded: bytes | None) -> bytes | None:
    """A recorded JSON input without its deadline (as people and tools read the arguments)."""
    if not recorded or _KEY.encode() not in recorded or not recorded.startswith(b"{"):
        return recorded
    try:
        payload = json.loads(recorded)
    except ValueError:
        return recorded
    if not isinstance(payload, dict) or _KEY not in payload:
        return recorded
    payload.pop(_KEY)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def same_arguments(recorded: bytes, new: bytes) -> bool:
    """Whether two recorded inputs hold the same arguments (their deadlines aside)."""
    if recorded == new:
        return True
    if _KEY.encode() not in recorded and _KEY.encode() not in new:
        return False
    try:
        old, fresh = loads(recorded), loads(new)
    except Exception:  # noqa: BLE001 - an input that does not decode is not the same
        return False
    if not isinstance(old, dict) or not isinstance(fresh, dict):
        return False
    old.pop(_KEY, None)
    fresh.pop(_KEY, None)
    return old == fresh


def same_timeout(record: RunRecord, timeout: float | None) -> bool:
    """Whether a run was started with ``timeout`` (within a second: its deadline is recorded)."""
    deadline = deadline_of(record)
    if deadline is None or timeout is None:
        return deadline is None and timeout is None
    return abs(deadline - record.created_at - timeout) < 1.0
