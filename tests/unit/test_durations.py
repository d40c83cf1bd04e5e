"""Tests for durable._durations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from durable._durations import parse_duration, to_timestamp
from durable._errors import DurableError, InvalidDuration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        (timedelta(minutes=2), 120.0),
        (timedelta(0), 0.0),
        ("30s", 30.0),
        ("30 s", 30.0),
        ("30sec", 30.0),
        ("30 seconds", 30.0),
        ("1 second", 1.0),
        ("5 minutes", 300.0),
        ("5min", 300.0),
        ("5m", 300.0),
        ("1 minute", 60.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1 hour, 30 minutes", 5400.0),
        ("1 hour and 30 minutes", 5400.0),
        ("2 hrs", 7200.0),
        ("7 days", 604800.0),
        ("2d", 172800.0),
        ("1 day", 86400.0),
        ("1.5h", 5400.0),
        (".5h", 1800.0),
        ("250ms", 0.25),
        ("250 milliseconds", 0.25),
        ("1 week", 604800.0),
        ("2w", 1209600.0),
        ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("90", 90.0),
        ("2.5", 2.5),
        ("  45s  ", 45.0),
        ("1H30M", 5400.0),
        ("10 Minutes", 600.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    """Numbers, timedeltas and duration strings convert to float seconds."""
    result = parse_duration(value)
    assert type(result) is float
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        timedelta(seconds=-1),
        "",
        "   ",
        "5 parsecs",
        "-5s",
        "-5",
        "s",
        "5 s s",
        "1h,,30m",
        "1 month",
        "2 years",
        "nan",
        "inf",
        "1e3",
        "5 minutesx",
        True,
        False,
        None,
        [30],
    ],
    ids=repr,
)
def test_invalid_durations(value: Any) -> None:
    """Bad values raise InvalidDuration, a DurableError and ValueError, with a hint."""
    with pytest.raises(InvalidDuration) as info:
        parse_duration(value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DurableError)
    assert '"30s", "5 minutes", "1h30m", "7 days"' in str(info.value)


def test_invalid_duration_message() -> None:
    """An unparsable string gets the documented message, word for word."""
    with pytest.raises(InvalidDuration) as info:
        parse_duration("5 parsecs")
    assert str(info.value) == (
        'invalid duration "5 parsecs": use seconds (e.g. 30), a timedelta, or a string like '
        '"30s", "5 minutes", "1h30m", "7 days" (units: ms, s, m, h, d, w)'
    )


@pytest.mark.parametrize(("value", "reason"), [(-3, "negative"), (math.nan, "not finite")])
def test_invalid_duration_says_why(value: float, reason: str) -> None:
    """Negative and non-finite numbers say what is wrong with them."""
    with pytest.raises(InvalidDuration, match=reason):
        parse_duration(value)


def test_huge_string_is_not_finite() -> None:
    """A number too large for a float is rejected, not turned into inf."""
    with pytest.raises(InvalidDuration, match="not finite"):
        parse_duration("9" * 400 + "s")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), 1704067200.0),
        (datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 1704067200.0),
        (datetime(2024, 1, 1, 1, tzinfo=ZoneInfo("Europe/Paris")), 1704067200.0),
        (1704067200.5, 1704067200.5),
        (1704067200, 1704067200.0),
    ],
)
def test_to_timestamp(when: Any, expected: float) -> None:
    """Aware datetimes become epoch seconds; numbers pass through as floats."""
    result = to_timestamp(when)
    assert type(result) is float
    assert result == expected


def test_to_timestamp_rejects_naive_datetime() -> None:
    """A naive datetime is refused with a message showing the fix."""
    with pytest.raises(InvalidDuration) as info:
        to_timestamp(datetime(2024, 1, 1))
    message = str(info.value)
    assert "naive" in message
    assert "timezone-aware" in message
    assert "datetime.now(timezone.utc)" in message


@pytest.mark.parametrize("when", [True, math.nan, math.inf, "2024-01-01", None])
def test_to_timestamp_rejects_other_values(when: Any) -> None:
    """Bools, non-finite numbers and other types are refused."""
    with pytest.raises(InvalidDuration):
        to_timestamp(when)
