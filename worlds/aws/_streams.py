"""Streams of the AWS world: a stream item per stream and an item per chunk, in the run's partition.

The stream item (``s#<name>``) holds its length, each writer's high-water mark, who closed it,
and its order among the run's streams; chunks are ``c#<name>#<index>``. A write is one
transaction: the run's lease is checked, the stream item moves on (conditional on the version
read), and the new chunks are put.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from durable._errors import LeaseLost, WorldError
from durable.world import FINISHED_STATUSES, StreamRecord
from worlds.aws._errors import translate
from worlds.aws._items import get_num, get_text, num, text
from worlds.aws._payloads import PayloadStore
from worlds.aws._schema import TTL_ATTRIBUTE, chunk_sk, run_key, stream_sk
from worlds.aws._transact import Transaction

_MAX_CHUNKS = 90
"""Chunks per transaction (DynamoDB allows 100 items per transaction)."""


class StreamStore:
    """``write_chunks``, ``read_chunks`` and ``list_streams`` of :class:`AwsWorld`."""

    def __init__(
        self,
        client: Any,
        table: str,
        payloads: PayloadStore,
        clock: Callable[[], float],
        item_ttl: float,
    ) -> None:
        self._client = client
        self._table = table
        self._payloads = payloads
        self._clock = clock
        self._item_ttl = item_ttl

    def _get(self, key: dict[str, Any], doing: str) -> dict[str, Any] | None:
        try:
            item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        except Exception as exc:
            raise translate(exc, doing) from exc
        found = item.get("Item")
        return dict(found) if found is not None else None

    def _query(self, doing: str, **args: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            for page in self._client.get_paginator("query").paginate(
                TableName=self._table, ConsistentRead=True, **args
            ):
                items.extend(page.get("Items", []))
        except Exception as exc:
            raise translate(exc, doing) from exc
        return items

    def write(
        self,
        run_id: str,
        owner: str,
        stream: str,
        writer: str,
        position: int,
        chunks: Sequence[bytes],
        close: bool,
    ) -> bool:
        """See ``World.write_chunks``."""
        _check_name(stream)
        if len(chunks) > _MAX_CHUNKS:
            head = chunks[:_MAX_CHUNKS]
            if not self.write(run_id, owner, stream, writer, position, head, False):
                return False
            return self.write(
                run_id, owner, stream, writer, position + len(head), chunks[_MAX_CHUNKS:], close
            )
        while True:
            result = self._write_once(run_id, owner, stream, writer, position, chunks, close)
            if result is not None:
                return result

    def _write_once(
        self,
        run_id: str,
        owner: str,
        stream: str,
        writer: str,
        position: int,
        chunks: Sequence[bytes],
        close: bool,
    ) -> bool | None:
        doing = f"writing to stream {stream!r} of run {run_id}"
        key = {"pk": text(f"run#{run_id}"), "sk": text(stream_sk(stream))}
        current = self._get(key, doing)
        if current is not None and "closed_by" in current:
            return get_text(current, "closed_by") == writer
        marks = {k: int(v["N"]) for k, v in (current or {}).get("marks", {}).get("M", {}).items()}
        mark = marks.get(writer, 0)
        fresh = list(chunks[max(0, mark - position) :])
        length = int(current["length"]["N"]) if current is not None else 0
        now = self._clock()
        marks[writer] = max(mark, position + len(chunks))
        item: dict[str, Any] = {
            **key,
            "length": num(length + len(fresh)),
            "marks": {"M": {k: num(v) for k, v in marks.items()}},
            "ver": num(int(current["ver"]["N"]) + 1 if current is not None else 1),
            "created": current["created"] if current is not None else num(now),
            "updated": num(now) if (fresh or close or current is None) else current["updated"],
            "order": current["order"] if current is not None else num(self._count(run_id)),
            TTL_ATTRIBUTE: num(int(now + self._item_ttl)),
        }
        if close:
            item["closed_by"] = text(writer)
        tx = Transaction(self._client, self._table)
        tx.check(run_key(run_id), "lo = :me", {":me": text(owner)})
        if current is None:
            tx.put(item, "attribute_not_exists(pk)")
        else:
            tx.put(item, "ver = :ver", {":ver": current["ver"]})
        for offset, chunk in enumerate(fresh):
            chunk_item: dict[str, Any] = {
                "pk": text(f"run#{run_id}"),
                "sk": text(chunk_sk(stream, length + offset)),
                TTL_ATTRIBUTE: num(int(now + self._item_ttl)),
            }
            self._payloads.attr(chunk_item, "d", run_id, bytes(chunk))
            tx.put(chunk_item)
        failed = tx.commit(doing)
        if failed == 0:
            raise LeaseLost(run_id)
        if failed is not None:
            return None  # another writer moved the stream on: read it again
        return True

    def _count(self, run_id: str) -> int:
        items = self._query(
            f"counting the streams of run {run_id}",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
            ExpressionAttributeValues={":pk": text(f"run#{run_id}"), ":s": text("s#")},
            ProjectionExpression="sk",
        )
        return len(items)

    def read(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        """See ``World.read_chunks``."""
        _check_name(stream)
        doing = f"reading stream {stream!r} of run {run_id}"
        # The run first: once it has finished no chunk can be added, so a length read after it
        # is final.
        run = self._get(run_key(run_id), doing)
        ended = run is None or run["st"]["S"] in FINISHED_STATUSES
        current = self._get({"pk": text(f"run#{run_id}"), "sk": text(stream_sk(stream))}, doing)
        length = int(current["length"]["N"]) if current is not None else 0
        begin = max(start, 0)
        end = length if limit is None else min(length, begin + max(limit, 0))
        chunks: list[bytes] = []
        if end > begin:
            items = self._query(
                doing,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":pk": text(f"run#{run_id}"),
                    ":lo": text(chunk_sk(stream, begin)),
                    ":hi": text(chunk_sk(stream, end - 1)),
                },
            )
            fetched = self._payloads.prefetch(items, "d")
            for item in items:
                ref = get_text(item, "d3")
                data = fetched[ref] if ref is not None else self._payloads.read(item, "d")
                chunks.append(data or b"")
        closed_by_writer = current is not None and "closed_by" in current
        return chunks, (ended or closed_by_writer) and end >= length

    def list(self, run_id: str) -> list[StreamRecord]:
        """See ``World.list_streams``."""
        doing = f"listing the streams of run {run_id}"
        run = self._get(run_key(run_id), doing)
        ended = run is None or run["st"]["S"] in FINISHED_STATUSES
        items = self._query(
            doing,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
            ExpressionAttributeValues={":pk": text(f"run#{run_id}"), ":s": text("s#")},
        )
        items.sort(key=lambda item: get_num(item, "order") or 0.0)
        return [
            StreamRecord(
                run_id,
                str(item["sk"]["S"])[2:],
                int(item["length"]["N"]),
                ended or "closed_by" in item,
                float(item["created"]["N"]),
                float(item["updated"]["N"]),
            )
            for item in items
        ]


_MAX_NAME_BYTES = 1000
"""DynamoDB sort keys hold 1,024 bytes, and a chunk's is ``c#<name>#<12 digits>``."""


def _check_name(stream: str) -> None:
    size = len(stream.encode("utf-8", "surrogatepass"))
    if size > _MAX_NAME_BYTES:
        raise WorldError(
            f"stream name {stream[:40]!r}... is {size} bytes long in UTF-8; the AWS world keeps "
            f"stream names of at most {_MAX_NAME_BYTES} bytes (DynamoDB's sort keys hold 1,024): "
            "use a shorter name"
        )
