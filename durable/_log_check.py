"""Checking a hand-built event log before :func:`durable.replay` reads it.

A log read from a world is well formed by construction; one built by hand (in a test, by a
tool) may not be, and the engine would then fail deep inside with a ``KeyError`` or a JSON
error that names neither the event nor what is wrong with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from durable._errors import InvalidEventLog, SerializationError
from durable._serialization import loads
from durable.world import Event

_Check = Callable[[bytes | None], str | None]
"""Returns what is wrong with an event's data, or ``None`` when it is fine."""


def _value(data: bytes | None) -> str | None:
    if data is None:  # the engine reads no data as None
        return None
    try:
        loads(data)
    except SerializationError as exc:
        return f"its data cannot be decoded ({exc})"
    return None


def _object(*required: tuple[str, type | tuple[type, ...]]) -> _Check:
    def check(data: bytes | None) -> str | None:
        if data is None:
            return "it needs data (a JSON object), it has none"
        try:
            info = json.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            return f"its data is not JSON ({exc})"
        if not isinstance(info, dict):
            return f"its data is JSON {type(info).__name__}, not an object"
        for key, kind in required:
            if key not in info:
                return f"its data has no {key!r} key"
            value = info[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"its data's {key!r} is {value!r}, not {_kind_text(kind)}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"its data's {key!r} is {value!r}, not a finite number"
        return None

    return check


def _kind_text(kind: type | tuple[type, ...]) -> str:
    if kind is str:
        return "a string"
    if kind is list:
        return "a list"
    return "a number"


_NUMBER = (int, float)


def _retried(data: bytes | None) -> str | None:
    if data is None:  # retried without naming steps to run again
        return None
    problem = _object(("steps", list))(data)
    if problem is not None:
        return problem
    steps = json.loads(data)["steps"]
    if not all(isinstance(op_id, str) for op_id in steps):
        return f"its data's 'steps' is {steps!r}, not a list of op_ids (strings)"
    return None


_OPERATIONS: dict[str, _Check | None] = {
    "step_completed": _value,
    "step_failed": _object(("type", str), ("message", str)),
    "step_retrying": _object(("retry_at", _NUMBER)),
    "sleep_started": _object(("wake_at", _NUMBER)),
    "value_recorded": _value,
    "hook_created": _object(("token", str)),
    "hook_received": _value,
    "hook_timed_out": None,
    "hook_disposed": None,
    "child_started": _object(("run_id", str)),
}
"""Kinds of event recorded for one operation of the workflow (they carry op_id and name)."""

_RUN_LEVEL: dict[str, _Check | None] = {
    "run_created": None,
    "run_retried": _retried,
    "run_completed": None,
    "run_failed": None,
    "run_cancelled": None,
}
"""Kinds of event about the run as a whole (no op_id)."""

_KINDS = ", ".join(sorted([*_OPERATIONS, *_RUN_LEVEL]))


def check_log(events: Sequence[Any]) -> None:
    """Raise :class:`~durable.InvalidEventLog` at the first event a world could not have written.

    An empty log is valid: the run has not recorded anything yet.
    """
    previous: Event | None = None
    for index, event in enumerate(events):
        problem = _problem(event, index, previous)
        if problem is not None:
            raise InvalidEventLog(index, problem)
        previous = event


def _problem(event: Any, index: int, previous: Event | None) -> str | None:
    if not isinstance(event, Event):
        return f"it is a {type(event).__name__}, not a durable.Event"
    return _place_problem(event, index, previous) or _field_problem(event) or _data_problem(event)


def _place_problem(event: Event, index: int, previous: Event | None) -> str | None:
    """Whether the event fits where it is in the log."""
    if not isinstance(event.seq, int) or isinstance(event.seq, bool):
        return f"its seq is {event.seq!r}, not an int"
    if previous is not None and event.seq <= previous.seq:
        return (
            f"its seq {event.seq} does not follow the previous event's seq {previous.seq}: "
            "events must be in log order, each seq used once"
        )
    if previous is not None and event.run_id != previous.run_id:
        return f"it belongs to run {event.run_id!r}, the events before it to {previous.run_id!r}"
    if index == 0 and event.kind != "run_created":
        return f"a log starts with a run_created event, this one with {event.kind!r}"
    if index > 0 and event.kind == "run_created":
        return "run_created appears after the log's start: a run is created once, first"
    return None


def _field_problem(event: Event) -> str | None:
    """Whether the event's own fields are what its kind needs."""
    if not isinstance(event.created_at, (int, float)) or isinstance(event.created_at, bool):
        return f"its created_at is {event.created_at!r}, not epoch seconds"
    if event.data is not None and not isinstance(event.data, (bytes, bytearray)):
        return f"its data is a {type(event.data).__name__}, not bytes (or None)"
    if event.kind in _OPERATIONS:
        if not isinstance(event.op_id, str) or not event.op_id:
            return f"a {event.kind} event needs the operation's op_id, it has {event.op_id!r}"
        if not isinstance(event.name, str) or not event.name:
            return f"a {event.kind} event needs the operation's name, it has {event.name!r}"
        return None
    if event.kind in _RUN_LEVEL:
        if event.op_id is not None:
            return f"a {event.kind} event is about the whole run, yet has op_id {event.op_id!r}"
        return None
    return f"its kind {event.kind!r} is unknown (known kinds: {_KINDS})"


def _data_problem(event: Event) -> str | None:
    check = _OPERATIONS.get(event.kind) or _RUN_LEVEL.get(event.kind)
    if check is None:
        return None
    return check(None if event.data is None else bytes(event.data))
