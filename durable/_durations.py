"""Parse durations and points in time for ``sleep``, ``sleep_until``, timeouts and retries.

A duration is a non-negative, finite number of seconds, a :class:`~datetime.timedelta`, or a
string made of one or more ``<number> <unit>`` parts, optionally separated by spaces, commas or
"and": ``"30s"``, ``"30 s"``, ``"5 minutes"``, ``"1h30m"``, ``"1 hour, 30 minutes"``, ``"1.5h"``,
``"250ms"``, ``"2w"``. A bare number string (``"90"``) is seconds. Units are case-insensitive.
Months and years are not accepted because their length varies; use days.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from durable._errors import InvalidDuration

__all__ = ["parse_duration", "to_timestamp"]

_HINT = (
    'use seconds (e.g. 30), a timedelta, or a string like "30s", "5 minutes", "1h30m", '
    '"7 days" (units: ms, s, m, h, d, w)'
)

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("us", "usec", "usecs", "microsecond", "microseconds"), 1e-6),
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 1e-3),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "wk", "wks", "week", "weeks"), 604800.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"\s*({_NUMBER})\s*")
# Longest unit names first so "ms" is not read as "m" followed by garbage.
_UNIT = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
_PART = re.compile(rf"\s*({_NUMBER})\s*({_UNIT})(?![a-z])\s*(?:(?:,|\band\b)\s*)?", re.IGNORECASE)


def parse_duration(value: float | int | timedelta | str) -> float:
    """Convert a duration to seconds.

    Args:
        value: seconds (int or float), a :class:`~datetime.timedelta`, or a string such as
            ``"30s"``, ``"5 minutes"``, ``"1h30m"``, ``"7 days"``, ``"250ms"`` or ``"90"``.

    Returns:
        The duration in seconds, as a float.

    Raises:
        InvalidDuration: the value is negative, not finite, a bool, of another type, or a
            string that cannot be parsed. It is also a :class:`ValueError`.
    """
    if isinstance(value, bool):
        raise InvalidDuration(f"invalid duration {value!r}: a bool is not a duration; {_HINT}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = _parse_string(value)
    else:
        raise InvalidDuration(f"invalid duration {value!r} (a {type(value).__name__}): {_HINT}")
    if not math.isfinite(seconds):
        raise InvalidDuration(f"invalid duration {_show(value)}: it is not finite; {_HINT}")
    if seconds < 0:
        raise InvalidDuration(f"invalid duration {_show(value)}: it is negative; {_HINT}")
    return seconds


def _parse_string(text: str) -> float:
    plain = _PLAIN_NUMBER.fullmatch(text)
    if plain is not None:
        return float(plain.group(1))
    if text.strip().startswith("-"):
        raise InvalidDuration(f"invalid duration {_show(text)}: it is negative; {_HINT}")
    total = 0.0
    pos = 0
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or part.end() == pos:
            raise InvalidDuration(f"invalid duration {_show(text)}: {_HINT}")
        total += float(part.group(1)) * _UNITS[part.group(2).lower()]
        pos = part.end()
    if pos == 0:  # empty or only whitespace
        raise InvalidDuration(f"invalid duration {_show(text)}: {_HINT}")
    return total


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def to_timestamp(when: datetime | float) -> float:
    """Convert the target of ``sleep_until`` to seconds since the Unix epoch.

    Args:
        when: a timezone-aware :class:`~datetime.datetime`, or epoch seconds as a number.

    Returns:
        Epoch seconds.

    Raises:
        InvalidDuration: ``when`` is a naive datetime (its instant would depend on the
            machine's local time zone), a bool, not finite, or of another type.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
            raise InvalidDuration(
                f"invalid time {when!r}: it is a naive datetime, whose instant depends on the "
                "machine's time zone; pass a timezone-aware datetime, e.g. "
                "datetime.now(timezone.utc) + timedelta(days=1)"
            )
        return when.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        if not math.isfinite(when):
            raise InvalidDuration(f"invalid time {when!r}: epoch seconds must be finite")
        return float(when)
    raise InvalidDuration(
        f"invalid time {when!r}: pass a timezone-aware datetime "
        "(e.g. datetime.now(timezone.utc) + timedelta(days=1)) or epoch seconds"
    )
