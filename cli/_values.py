"""Turn what a world stores (opaque bytes, epoch seconds) into values people and scripts can read.

Recorded values are decoded *without* importing the user's code: durable's tagged JSON
(``{"__durable__": "dataclass", ...}``) is flattened to plain JSON, so ``durable inspect`` works
in any directory, even one where the workflow's module cannot be imported.
"""

from __future__ import annotations

import base64
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "JsonValue",
    "compact",
    "decode",
    "error_info",
    "format_ago",
    "format_duration",
    "format_local",
    "format_when",
    "iso",
    "plain",
    "shorten",
]

JsonValue = Any
"""A value made of JSON types only (``json.dumps`` accepts it as it is)."""

_TAG = "__durable__"
_PICKLE_PREFIX = b"\x80"


def plain(tree: JsonValue) -> JsonValue:
    """Flatten durable's tagged JSON into plain JSON.

    Dataclasses, pydantic models and enums become their fields or value; tuples and sets become
    lists; datetimes, dates, UUIDs and Decimals become strings; timedeltas become seconds.

    Args:
        tree: a JSON value as ``json.loads`` returns it.

    Returns:
        The same value with every tagged object replaced by its plain form.
    """
    if isinstance(tree, list):
        return [plain(item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    tag = tree.get(_TAG)
    if not isinstance(tag, str):
        return {key: plain(value) for key, value in tree.items()}
    value = tree.get("v")
    if tag == "dict":
        return {_key(plain(k)): plain(v) for k, v in value or []}
    if tag == "timedelta" and isinstance(value, list) and len(value) == 3:
        days, seconds, micros = value
        return days * 86400 + seconds + micros / 1e6
    if tag in ("float", "datetime", "date", "time", "uuid", "decimal", "bytes", "bytearray"):
        return value
    # tuple, set, frozenset, namedtuple, enum, dataclass, pydantic, and tags from newer versions.
    return plain(value)


def _key(key: JsonValue) -> str:
    return key if isinstance(key, str) else json.dumps(key, ensure_ascii=False)


def decode(data: bytes | None) -> tuple[JsonValue, str | None]:
    """Decode a recorded payload for display.

    Args:
        data: the bytes an event or run record holds.

    Returns:
        ``(value, encoding)``: for ``"json"`` the plain JSON value; for ``"pickle"`` (and
        ``"bytes"``, anything else) the bytes in base64, since unpickling would run code.
        ``(None, None)`` when there is no payload.
    """
    if data is None:
        return None, None
    if data[:1] == _PICKLE_PREFIX:
        return base64.b64encode(data).decode("ascii"), "pickle"
    try:
        return plain(json.loads(data)), "json"
    except ValueError:
        return base64.b64encode(data).decode("ascii"), "bytes"


def error_info(data: bytes | None) -> dict[str, Any] | None:
    """The ``type``, ``message`` and ``traceback`` of a recorded error payload, if any."""
    value, encoding = decode(data)
    if encoding != "json" or not isinstance(value, dict):
        return None
    return {
        "type": str(value.get("type", "Exception")),
        "message": str(value.get("message", "")),
        "traceback": str(value.get("traceback", "")),
    }


def compact(value: JsonValue, limit: int = 80) -> str:
    """One line of JSON for a table cell, shortened with an ellipsis past ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int, whole: str) -> str:
    """The start of ``text`` for people, saying how much was left out and where to see it all.

    Args:
        text: the text, of any length.
        limit: how many characters to keep.
        whole: what shows the text whole (a command), for the note.
    """
    if len(text) <= limit:
        return text
    left_out = len(text) - limit
    return f"{text[:limit]}… [{left_out:,} more characters; {whole} shows it whole]"


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string (the form every ``--json`` output uses)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def format_local(timestamp: float) -> str:
    """Epoch seconds as local wall-clock time, to the second."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def format_when(timestamp: float, now: float | None = None) -> str:
    """Local time of day (``"14:03:07"``), with the date when it is not today."""
    moment = datetime.fromtimestamp(timestamp)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    if moment.date() == today:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """A duration for people: ``"850 µs"``, ``"12 ms"``, ``"3.4 s"``, ``"5 m 02 s"``, ``"7 d"``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 1e-6:
        return "0 s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_ago(timestamp: float, now: float) -> str:
    """How long ago (``"3 s ago"``) or ahead (``"in 7 d"``) a time is, seen from ``now``."""
    delta = now - timestamp
    if abs(delta) < 1:
        return "now"
    if delta > 0:
        return f"{format_duration(delta)} ago"
    return f"in {format_duration(-delta)}"
