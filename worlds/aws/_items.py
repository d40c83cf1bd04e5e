"""DynamoDB items of the AWS world and the records they stand for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from durable.world import Event, HookRecord, RunRecord, RunStatus
from worlds.aws._payloads import PayloadStore
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


def run_from_item(
    item: dict[str, Any], payloads: PayloadStore, extras: Sequence[dict[str, Any]] = ()
) -> RunRecord:
    """The :class:`RunRecord` a run item holds.

    ``extras`` are the run's ``in`` and ``out`` items (input; output or error); without them
    the record's input reads as empty.
    """
    data = {str(extra["sk"]["S"]): extra for extra in extras}
    inputs, outcome = data.get("in", {}), data.get("out", {})
    return RunRecord(
        id=str(item["id"]["S"]),
        workflow_name=str(item["wf"]["S"]),
        status=cast(RunStatus, item["st"]["S"]),
        input=payloads.read(inputs, "d") or b"",
        output=payloads.read(outcome, "out"),
        error=payloads.read(outcome, "err"),
        created_at=float(item["created"]["N"]),
        updated_at=float(item["updated"]["N"]),
        wake_at=get_num(item, "wake"),
        lease_owner=get_text(item, "lo"),
        lease_expires_at=get_num(item, "lx"),
        cancel_requested=bool(item.get("cxl", {}).get("BOOL", False)),
        parent_id=get_text(item, "parent"),
        last_seq=int(item["seq"]["N"]),
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
