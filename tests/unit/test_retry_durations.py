"""RetryPolicy delays take durations as every other duration in the API does."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from durable import InvalidDuration, RetryPolicy


@pytest.mark.parametrize(("initial", "maximum"), [
    ("5s", "5m"),
    ("5 seconds", "5 minutes"),
    (timedelta(seconds=5), timedelta(minutes=5)),
    (5, 300),
    (5.0, "300"),
])
def test_delays_take_durations_and_keep_seconds(initial, maximum):
    policy = RetryPolicy(initial_delay=initial, max_delay=maximum, jitter=False)
    assert policy.initial_delay == 5.0 and type(policy.initial_delay) is float
    assert policy.max_delay == 300.0 and type(policy.max_delay) is float
    assert policy == RetryPolicy(initial_delay=5.0, max_delay=300.0, jitter=False)
    assert hash(policy) == hash(RetryPolicy(initial_delay=5.0, max_delay=300.0, jitter=False))
    assert [policy.delay_before(n) for n in range(2, 9)] == [5, 10, 20, 40, 80, 160, 300]


def test_positional_arguments_keep_their_order():
    assert RetryPolicy(4, "1s", 3, "1m", False) == RetryPolicy(
        max_attempts=4, initial_delay=1.0, backoff=3.0, max_delay=60.0, jitter=False
    )


@pytest.mark.parametrize(("fields", "message"), [
    ({"initial_delay": "5 fortnights"},
     'RetryPolicy.initial_delay: invalid duration "5 fortnights"'),
    ({"max_delay": "-5s"}, 'RetryPolicy.max_delay: invalid duration "-5s": it is negative'),
    ({"max_delay": timedelta(seconds=-1)}, "RetryPolicy.max_delay: invalid duration"),
])
def test_a_bad_duration_is_the_usual_clear_error_naming_the_field(fields, message):
    with pytest.raises(InvalidDuration, match=re.escape(message)) as caught:
        RetryPolicy(**fields)
    assert "units: ms, s, m, h, d, w" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_delay_of_another_type_says_what_it_takes():
    with pytest.raises(ValueError, match=r'RetryPolicy.initial_delay must be seconds, a timedelta '
                       r'or a duration string such as "5s", got \[5\]'):
        RetryPolicy(initial_delay=[5])  # type: ignore[arg-type]


USER_CODE = '''
from datetime import timedelta

from durable import RetryPolicy, step

policy = RetryPolicy(initial_delay="5s", max_delay=timedelta(minutes=5))
seconds: float = policy.initial_delay + policy.max_delay


@step(retry=RetryPolicy(max_attempts=5, initial_delay="2s", max_delay="5m"))
def charge(amount: int) -> int:
    return amount
'''


def test_duration_delays_pass_mypy_strict_and_read_as_float(tmp_path: Path):
    api = pytest.importorskip("mypy.api")
    source = tmp_path / "user_code.py"
    source.write_text(USER_CODE)
    stdout, stderr, status = api.run(
        ["--strict", "--config-file=", f"--cache-dir={os.devnull}", str(source)]
    )
    assert status == 0, stdout + stderr
