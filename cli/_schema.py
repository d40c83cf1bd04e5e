"""The documents ``--json`` prints. Keys are stable: scripts may rely on them.

Times are ISO 8601 strings in UTC (``null`` when unset), durations are seconds, recorded values
are plain JSON (see :func:`cli._values.plain`).
"""

from __future__ import annotations

from typing import Any

from cli._dag_spec import dag_name
from cli._timeline import Operation, Timeline
from cli._values import decode, error_info, iso
from durable._deadlines import arguments_only, deadline_of
from durable.world import Event, RunRecord

__all__ = ["event_json", "operation_json", "run_json", "timeline_json"]


def run_json(record: RunRecord, *, detail: bool = False) -> dict[str, Any]:
    """A run as a JSON object.

    Keys: ``id, workflow, dag`` (a DAG run's spec name, else null), ``status, created_at,
    updated_at, wake_at, parent_id, cancel_requested, lease_owner, lease_expires_at,
    event_count, error`` (``{type, message}`` or null); with
    ``detail`` also ``input`` (``{"args": [...], "kwargs": {...}}``), ``deadline`` (when its
    timeout cancels it, or null), ``result``, and the error's ``traceback``.
    """
    error = error_info(record.error)
    doc: dict[str, Any] = {
        "id": record.id,
        "workflow": record.workflow_name,
        "dag": dag_name(record),
        "status": record.status,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "wake_at": iso(record.wake_at),
        "parent_id": record.parent_id,
        "cancel_requested": record.cancel_requested,
        "lease_owner": record.lease_owner,
        "lease_expires_at": iso(record.lease_expires_at),
        "event_count": record.last_seq,
        "error": None if error is None else {"type": error["type"], "message": error["message"]},
    }
    if detail:
        doc["input"], _ = decode(arguments_only(record.input))
        doc["deadline"] = iso(deadline_of(record))
        doc["result"], _ = decode(record.output)
        if doc["error"] is not None and error is not None:
            doc["error"]["traceback"] = error["traceback"]
    return doc


def event_json(event: Event) -> dict[str, Any]:
    """An event as a JSON object.

    Keys: ``run_id, seq, kind, op_id, name, created_at, data, data_encoding``, where
    ``data_encoding`` is ``"json"`` (``data`` is the value), ``"pickle"`` or ``"bytes"`` (``data``
    is base64), or ``null`` (no payload).
    """
    data, encoding = decode(event.data)
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "kind": event.kind,
        "op_id": event.op_id,
        "name": event.name,
        "created_at": iso(event.created_at),
        "data": data,
        "data_encoding": encoding,
    }


def operation_json(op: Operation) -> dict[str, Any]:
    """An operation (step, sleep, recorded value) as a JSON object.

    Keys: ``op_id, kind, name, status, started_at, finished_at, duration_seconds, attempts,
    attempt_log, error, wake_at, value``.
    """
    return {
        "op_id": op.op_id,
        "kind": op.kind,
        "name": op.name,
        "status": op.status,
        "started_at": iso(op.started_at),
        "finished_at": iso(op.finished_at),
        "duration_seconds": op.duration,
        "attempts": len(op.attempts) if op.kind == "step" else None,
        "attempt_log": [
            {
                "attempt": a.number,
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
                "duration_seconds": max(a.finished_at - a.started_at, 0.0),
                "error": a.error,
                "retry_at": iso(a.retry_at),
            }
            for a in op.attempts
        ],
        "error": op.error,
        "wake_at": iso(op.wake_at),
        "value": op.value,
    }


def timeline_json(record: RunRecord, timeline: Timeline) -> dict[str, Any]:
    """What ``durable inspect --json`` prints.

    Keys: ``run`` (see :func:`run_json`), ``started_at``, ``finished_at``, ``duration_seconds``
    and ``operations`` in program order (see :func:`operation_json`).
    """
    end = timeline.finished_at
    return {
        "run": run_json(record, detail=True),
        "started_at": iso(timeline.started_at),
        "finished_at": iso(end),
        "duration_seconds": None if end is None else max(end - timeline.started_at, 0.0),
        "operations": [operation_json(op) for op in timeline.operations],
    }
