"""One DynamoDB transaction: items to put, update, delete or check, all or nothing."""

from __future__ import annotations

import random
import time
from typing import Any

from worlds.aws._errors import error_code, translate

_CONFLICT_RETRIES = 10


class Transaction:
    """Collects the items of a ``TransactWriteItems`` request."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self.items: list[dict[str, Any]] = []

    def put(
        self, item: dict[str, Any], condition: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Write a whole item, if ``condition`` holds for the one it replaces."""
        op: dict[str, Any] = {"TableName": self._table, "Item": item}
        if condition:
            op["ConditionExpression"] = condition
        if values:
            op["ExpressionAttributeValues"] = values
        self.items.append({"Put": op})

    def update(self, args: dict[str, Any]) -> None:
        """Change an item (``args`` as built by ``Changes.update``)."""
        self.items.append({"Update": args})

    def delete(
        self, key: dict[str, Any], condition: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Remove an item, if ``condition`` holds."""
        op: dict[str, Any] = {"TableName": self._table, "Key": key}
        if condition:
            op["ConditionExpression"] = condition
        if values:
            op["ExpressionAttributeValues"] = values
        self.items.append({"Delete": op})

    def check(self, key: dict[str, Any], condition: str, values: dict[str, Any]) -> None:
        """Require ``condition`` of an item without changing it."""
        self.items.append(
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": key,
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                }
            }
        )

    def commit(self, doing: str) -> int | None:
        """Write everything; ``None`` on success, else the index of an item whose condition failed.

        Transactions that collide with another one on the same item are retried here.
        """
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._client.transact_write_items(TransactItems=self.items)
                return None
            except Exception as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise translate(exc, doing) from exc
                failed = _failed_condition(exc)
                if failed is not None:
                    return failed
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise translate(_Conflict(), doing)


def _failed_condition(exc: BaseException) -> int | None:
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    for index, reason in enumerate(reasons):
        if reason.get("Code") == "ConditionalCheckFailed":
            return index
    if not reasons:
        # Without reasons the failure can only be a condition (conflicts name themselves).
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        if "ConditionalCheckFailed" in message:
            return _index_from_message(message)
    return None


def _index_from_message(message: str) -> int:
    # "... reasons [None, ConditionalCheckFailed, None]"
    listed = message.rpartition("[")[2].rstrip("]").split(",")
    for index, code in enumerate(listed):
        if code.strip() == "ConditionalCheckFailed":
            return index
    return 0


class _Conflict(Exception):
    def __init__(self) -> None:
        super().__init__(
            f"the transaction kept colliding with others on the same items "
            f"({_CONFLICT_RETRIES} attempts)"
        )
