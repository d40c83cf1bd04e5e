"""DynamoDB items of the AWS world and the records they stand for."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from durable._errors import RunDataLost
from durable.world import Event, HookRecord, RunRecord, RunStatus
from worlds.aws._payloads import EXPIRY, PayloadStore
from worlds.aws._schema import SEQ_DIGITS, due_shard


def num(value: float | int) -> dict[str, str]:
    """A DynamoDB number attribute."""
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def text(value: str) -> dict[str, str]:
    """A DynamoDB string attribute."""
    return {"S": value}


def get_num(item: dict[str, Any], name: str) -> float | None:
    raw = item.get(name)
    return float(raw["N"]) if raw is not None else None


def get_text(item: dict[str, Any], name: str) -> str | None:
    raw = item.get(name)
    return str(raw["S"]) if raw is not None else None


def due_of(status: str, created: float, wake_at: float | None, lease_expires: float | None) -> (
    float | None
):
    """When a run in this state becomes runnable (its ``by_due`` sort key), if ever by itself."""
    if status == "pending":
        return created
    if status == "running":
        return lease_expires
    if status == "suspended":
        return wake_at
    return None


class StoredRun(RunRecord):
    """A :class:`RunRecord` whose input, output and error are read when first used.

    Listing runs, reading a status, cancelling and gc need none of them: a payload stored in
    S3 is fetched only when the engine (or a caller) reads it, so one that is gone fails only
    what needs it (with :class:`~durable._errors.RunDataLost`), not every read of the run.
    """

    __slots__ = ("_sources",)

    def __getattr__(self, name: str) -> Any:
        # Called only for a slot not set yet: a payload not read so far.
        try:
            sources = object.__getattribute__(self, "_sources")
        except AttributeError:
            raise AttributeError(name) from None
        load = sources.get(name)
        if load is None:
            raise AttributeError(name)
        value = load()
        object.__setattr__(self, name, value)
        return value

    def __eq__(self, other: object) -> bool:
        # Equal to a plain record holding the same values, as the protocol's records compare.
        if not isinstance(other, RunRecord):
            return NotImplemented
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(RunRecord)
            if f.compare
        )

    __hash__ = RunRecord.__hash__


_PAYLOAD_FIELDS = ("input", "output", "error")


def changed(record: RunRecord, **changes: Any) -> RunRecord:
    """``dataclasses.replace`` that leaves payloads not read yet unread."""
    if not isinstance(record, StoredRun):
        return dataclasses.replace(record, **changes)
    try:
        sources = dict(object.__getattribute__(record, "_sources"))
    except AttributeError:
        sources = {}
    values = {
        f.name: changes.get(f.name, _peek(record, f.name)) for f in dataclasses.fields(record)
    }
    for name in changes:
        sources.pop(name, None)
    return _stored(values, sources)


def _peek(record: StoredRun, name: str) -> Any:
    try:
        return object.__getattribute__(record, name)
    except AttributeError:
        return None  # a payload not read yet: its source stays


def _stored(values: dict[str, Any], sources: dict[str, Callable[[], bytes | None]]) -> RunRecord:
    lazy = {name: load for name, load in sources.items() if name in _PAYLOAD_FIELDS}
    if not lazy:
        return RunRecord(**values)
    record = StoredRun(**{**values, **dict.fromkeys(lazy, b"")})
    for name in lazy:
        object.__delattr__(record, name)
    object.__setattr__(record, "_sources", lazy)
    return record


def run_from_item(
    item: dict[str, Any], payloads: PayloadStore, extras: Sequence[dict[str, Any]] = ()
) -> RunRecord:
    """The :class:`RunRecord` a run item holds.

    ``extras`` are the items read with it (the run's ``in`` and ``out`` items: input; output or
    error); without any the record's input reads as empty. Payloads stored in S3 are read when
    first used, and a missing ``in`` item (expired) or S3 object raises ``RunDataLost`` then.
    """
    run_id = str(item["id"]["S"])
    data = {str(extra["sk"]["S"]): extra for extra in extras}
    inputs, outcome = data.get("in"), data.get("out", {})
    values: dict[str, Any] = {
        "id": run_id,
        "workflow_name": str(item["wf"]["S"]),
        "status": cast(RunStatus, item["st"]["S"]),
        "input": b"",
        "output": None,
        "error": None,
        "created_at": float(item["created"]["N"]),
        "updated_at": float(item["updated"]["N"]),
        "wake_at": get_num(item, "wake"),
        "lease_owner": get_text(item, "lo"),
        "lease_expires_at": get_num(item, "lx"),
        "cancel_requested": bool(item.get("cxl", {}).get("BOOL", False)),
        "parent_id": get_text(item, "parent"),
        "last_seq": int(item["seq"]["N"]),
    }
    sources: dict[str, Callable[[], bytes | None]] = {}
    if inputs is None:
        if data:  # read with its items, yet the input is not among them
            sources["input"] = partial(_input_gone, run_id)
    elif "d" in inputs:
        values["input"] = bytes(inputs["d"]["B"])
    elif "d3" in inputs:
        sources["input"] = partial(_or_empty, payloads.loader(inputs, "d", run_id))
    for name, attr in (("output", "out"), ("error", "err")):
        if attr in outcome:
            values[name] = bytes(outcome[attr]["B"])
        elif attr + "3" in outcome:
            sources[name] = payloads.loader(outcome, attr, run_id)
    return _stored(values, sources)


def _or_empty(load: Callable[[], bytes | None]) -> bytes:
    return load() or b""


def _input_gone(run_id: str) -> bytes:
    raise RunDataLost(
        f"the input of run {run_id} is gone: this run's log expired {EXPIRY}, or it was "
        "deleted. The run cannot go on."
    )


def event_from_item(
    run_id: str, item: dict[str, Any], payloads: PayloadStore, fetched: dict[str, bytes]
) -> Event:
    """The :class:`Event` an event item holds (``fetched``: S3 payloads read in advance)."""
    ref = get_text(item, "d3")
    data = fetched[ref] if ref is not None and ref in fetched else payloads.read(item, "d")
    return Event(
        run_id=run_id,
        seq=int(str(item["sk"]["S"])[2:]),
        kind=str(item["k"]["S"]),
        op_id=get_text(item, "op"),
        name=get_text(item, "n"),
        data=data,
        created_at=float(item["at"]["N"]),
    )


def seq_from_sk(sk: str) -> int:
    """The sequence number in an event's sort key."""
    return int(sk[2 : 2 + SEQ_DIGITS])


def hook_from_item(item: dict[str, Any]) -> HookRecord:
    """The :class:`HookRecord` a hook item holds."""
    return HookRecord(
        token=str(item["pk"]["S"])[len("hook#") :],
        run_id=str(item["run"]["S"]),
        op_id=str(item["op"]["S"]),
        created_at=float(item["created"]["N"]),
        timeout_at=get_num(item, "timeout"),
        schema=get_text(item, "schema"),
    )


class Changes:
    """Builds an ``UpdateExpression`` for a run item (SET, REMOVE, ADD) with its values."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []
        self.deletes: list[str] = []
        self.values: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def set(self, name: str, value: dict[str, Any] | None) -> Changes:
        """Set ``name`` to a value, or remove it when ``value`` is ``None``."""
        alias = f"#{name}"
        self.names[alias] = name
        if value is None:
            self.removes.append(alias)
        else:
            self.sets.append(f"{alias} = :{name}")
            self.values[f":{name}"] = value
        return self

    def add(self, name: str, value: dict[str, Any]) -> Changes:
        """Add a number (or set elements) to ``name``."""
        alias = f"#{name}"
        self.names[alias] = name
        self.adds.append(f"{alias} :{name}_add")
        self.values[f":{name}_add"] = value
        return self

    def delete(self, name: str, value: dict[str, Any]) -> Changes:
        """Remove set elements from ``name``."""
        alias = f"#{name}"
        self.names[alias] = name
        self.deletes.append(f"{alias} :{name}_del")
        self.values[f":{name}_del"] = value
        return self

    def schedule(
        self, run_id: str, status: str, created: float, wake_at: float | None,
        lease_expires: float | None,
    ) -> Changes:
        """Keep the run's ``by_due`` entry in step with its state."""
        due = due_of(status, created, wake_at, lease_expires)
        self.set("due", num(due) if due is not None else None)
        self.set("dshard", text(due_shard(run_id)) if due is not None else None)
        return self

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        if self.deletes:
            parts.append("DELETE " + ", ".join(self.deletes))
        return " ".join(parts)

    def update(
        self, table: str, key: dict[str, Any], condition: str | None = None,
        values: dict[str, Any] | None = None, names: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The arguments of an ``Update`` (in a transaction or ``UpdateItem``)."""
        args: dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": self.expression(),
            "ExpressionAttributeNames": {**self.names, **(names or {})},
        }
        all_values = {**self.values, **(values or {})}
        if all_values:
            args["ExpressionAttributeValues"] = all_values
        if condition:
            args["ConditionExpression"] = condition
        return args
