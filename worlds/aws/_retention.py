"""Retention of the AWS world: deleting finished runs' items and S3 payloads (``durable gc``)."""

from __future__ import annotations

import time
from typing import Any

from durable.world import FINISHED_STATUSES
from worlds.aws._base import AwsWorldBase
from worlds.aws._errors import translate
from worlds.aws._items import text
from worlds.aws._schema import BY_STATUS


class RetentionWorld(AwsWorldBase):
    """``delete_runs`` of :class:`~worlds.aws.AwsWorld`."""

    def delete_runs(self, finished_before: float) -> int:
        deleted = 0
        for status in sorted(FINISHED_STATUSES):
            items = self._query(
                f"listing {status} runs to delete",
                IndexName=BY_STATUS,
                KeyConditionExpression="st = :st",
                ExpressionAttributeValues={":st": text(status)},
            )
            ids = [str(item["id"]["S"]) for item in items]
            for start in range(0, len(ids), 100):
                records = self._fetch_runs(ids[start : start + 100])
                for record in records.values():
                    if record.updated_at < finished_before and not self._parent_unfinished(
                        record.parent_id
                    ):
                        self._delete_run(record.id)
                        deleted += 1
        return deleted

    def _parent_unfinished(self, parent_id: str | None) -> bool:
        parent = self.get_run(parent_id) if parent_id is not None else None
        return parent is not None and parent.status not in FINISHED_STATUSES

    def _delete_run(self, run_id: str) -> None:
        keys = self._query(
            f"listing the items of run {run_id}",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text(f"run#{run_id}")},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        # The run record goes last, so a gc cut short leaves a run that a later gc finds.
        keys.sort(key=lambda key: key["sk"]["S"] == "run")
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            self._batch_write(requests, f"deleting run {run_id}")
        self.payloads.delete_run(run_id)
        self._drop(run_id)

    def _batch_write(self, requests: list[dict[str, Any]], doing: str) -> None:
        pending = {self.table: requests}
        for attempt in range(8):
            try:
                result = self.clients.dynamodb.batch_write_item(RequestItems=pending)
            except Exception as exc:
                raise translate(exc, doing) from exc
            pending = result.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(2.0, 0.05 * 2**attempt))
        raise translate(RuntimeError("unprocessed items after 8 attempts"), doing)
