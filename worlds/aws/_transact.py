"""One DynamoDB transaction: items to put, update, delete or check, all or nothing."""

from __future__ import annotations

import random
import time
from typing import Any

from durable._errors import WorldError
from worlds.aws._errors import error_code, translate


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

        A transaction DynamoDB cancels for a passing reason (it collided with another one on
        the same items, or the table is throttled) is retried here with backoff; if that goes on
        it ends in a transient ``WorldError`` (workers back off and retry). Any other reason
        (a request DynamoDB finds invalid) is raised at once with DynamoDB's own message.

        Raises:
            WorldError: the transaction could not be written; nothing of it was.
        """
        passing: list[tuple[str, str]] = []
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(_MAX_BACKOFF, _FIRST_BACKOFF * 2**attempt)))
            try:
                self._client.transact_write_items(TransactItems=self.items)
                return None
            except Exception as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise translate(exc, doing) from exc
                reasons = _reasons(exc)
                for index, (code, _) in enumerate(reasons):
                    if code == "ConditionalCheckFailed":
                        return index
                refused = [(i, c, m) for i, (c, m) in enumerate(reasons) if c not in _FINE]
                lasting = [(i, c, m) for i, c, m in refused if c not in _PASSING]
                if lasting:
                    raise _refused(lasting, doing) from exc
                passing = [(c, m) for _, c, m in refused] or [("TransactionCanceled", "")]
        named = "; ".join(f"{code}: {message}" if message else code for code, message in passing)
        raise _gave_up(named, doing)


_ATTEMPTS = 10
_FIRST_BACKOFF = 0.01
_MAX_BACKOFF = 1.0
"""Seconds: attempt n waits up to min(1, 0.01 * 2**n), about 5 s over all attempts at most."""

_FINE = frozenset({"None", ""})
"""Reason codes of the items that were not what cancelled the transaction."""
_PASSING = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
     "RequestLimitExceeded", "InternalServerError", "TransactionInProgress"}
)
"""Reason codes that may not come again: the transaction is retried."""


def _reasons(exc: BaseException) -> list[tuple[str, str]]:
    """``(code, message)`` per item of a cancelled transaction, in the order of its items."""
    response = getattr(exc, "response", {}) or {}
    listed = response.get("CancellationReasons") or []
    if listed:
        return [(str(r.get("Code") or "None"), str(r.get("Message") or "")) for r in listed]
    # Without structured reasons the message lists them: "... reasons [None, ConditionalCheck
    # Failed, None]".
    message = str(response.get("Error", {}).get("Message", ""))
    if "[" not in message:
        return []
    codes = message.rpartition("[")[2].rstrip("]").split(",")
    return [(code.strip(), "") for code in codes]


def _refused(refused: list[tuple[int, str, str]], doing: str) -> WorldError:
    said = "; ".join(
        f"item {index + 1}: {code}" + (f": {message}" if message else "")
        for index, code, message in refused
    )
    return WorldError(
        f"DynamoDB refused the transaction while {doing} ({said}); nothing was written. If "
        "the table was not made by `durable bootstrap` (keys pk and sk, string), point the "
        "world at one that was: aws://?prefix=NAME."
    )


def _gave_up(reasons: str, doing: str) -> WorldError:
    return WorldError(
        f"DynamoDB kept cancelling the transaction while {doing} ({reasons}), {_ATTEMPTS} "
        "times with backoff: other writes to the same run, or throttling. Nothing was "
        "written; workers back off and retry. If it persists, check the table's capacity.",
        transient=True,
    )
