"""Options for steps and workflows, as frozen dataclasses."""

from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried. Steps retry by default with these values."""

    max_attempts: int = 3
    """Total attempts including the first; 1 means never retry."""
    initial_delay: float = 1.0
    """Seconds before the second attempt."""
    backoff: float = 2.0
    """Multiplier applied to the delay after each attempt."""
    max_delay: float = 60.0
    """Upper bound on any single delay, in seconds."""
    jitter: bool = True
    """Spread delays randomly over [delay/2, delay] so retries of many runs do not align."""

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(
                f"RetryPolicy.max_attempts must be a whole number >= 1, got {attempts!r}"
            )
        for name in ("initial_delay", "max_delay", "backoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"RetryPolicy.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be finite, got {value!r}")
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


NO_RETRY = RetryPolicy(max_attempts=1)
