"""Options for steps and workflows, as frozen dataclasses."""

from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass
from datetime import timedelta

from durable._durations import parse_duration
from durable._errors import InvalidDuration


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """How a failing step is retried. Steps retry by default with these values.

    The delays take any duration (``2.5``, ``"5s"``, ``"5m"``, ``timedelta(seconds=5)``) and
    are kept as seconds: ``RetryPolicy(initial_delay="5s").initial_delay == 5.0``.
    """

    max_attempts: int
    """Total attempts including the first; 1 means never retry."""
    initial_delay: float
    """Seconds before the second attempt."""
    backoff: float
    """Multiplier applied to the delay after each attempt."""
    max_delay: float
    """Upper bound on any single delay, in seconds."""
    jitter: bool
    """Spread delays randomly over [delay/2, delay] so retries of many runs do not align."""

    def __init__(
        self,
        max_attempts: int = 3,
        initial_delay: float | str | timedelta = 1.0,
        backoff: float = 2.0,
        max_delay: float | str | timedelta = 60.0,
        jitter: bool = True,
    ) -> None:
        """Check the values and turn the delays into seconds.

        Raises:
            InvalidDuration: a delay is a string or timedelta that is not a duration (it is
                also a :class:`ValueError`).
            ValueError: another value is out of range or of the wrong type.
        """
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError(
                f"RetryPolicy.max_attempts must be a whole number >= 1, got {max_attempts!r}"
            )
        # A generated __init__ would take only numbers for the delays; frozen, so set directly.
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "initial_delay", _seconds("initial_delay", initial_delay))
        object.__setattr__(self, "backoff", _number("backoff", backoff))
        object.__setattr__(self, "max_delay", _seconds("max_delay", max_delay))
        object.__setattr__(self, "jitter", jitter)
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0 seconds")
        if self.backoff < 1:
            raise ValueError(f"RetryPolicy.backoff must be >= 1, got {self.backoff}")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 for the first retry)."""
        delay = min(self.initial_delay * self.backoff ** max(attempt - 2, 0), self.max_delay)
        if self.jitter and delay > 0:
            delay = _random.uniform(delay / 2, delay)
        return delay


def _seconds(name: str, value: object) -> float:
    """A delay in seconds, from a number, a timedelta or a duration string."""
    if isinstance(value, str | timedelta):
        try:
            return parse_duration(value)
        except InvalidDuration as exc:
            raise InvalidDuration(f"RetryPolicy.{name}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"RetryPolicy.{name} must be seconds, a timedelta or a duration string such as "
            f'"5s", got {value!r}'
        )
    return _number(name, value)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"RetryPolicy.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"RetryPolicy.{name} must be finite, got {value!r}")
    return float(value)


NO_RETRY = RetryPolicy(max_attempts=1)
