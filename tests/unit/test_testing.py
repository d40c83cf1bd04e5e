"""durable.testing: a week-long workflow finishes in milliseconds."""

from __future__ import annotations

import time

import durable
from durable.testing import world


@durable.step
def remind(who: str) -> str:
    return f"reminded {who}"


@durable.workflow
def weekly_reminder(who: str) -> list[str]:
    out = [remind(who)]
    durable.sleep("7 days")
    out.append(remind(who))
    return out


def test_fixture_skips_time(durable_world):
    start = time.monotonic()
    assert weekly_reminder("ada") == ["reminded ada", "reminded ada"]
    assert time.monotonic() - start < 5
    assert durable_world.now() - durable_world.started_at >= 7 * 86400


def test_manual_clock_control():
    with world(time_skipping=False) as env:
        run = weekly_reminder.start("bob")
        deadline = time.monotonic() + 5
        while run.status != "suspended" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.status == "suspended"
        env.advance("6 days")
        time.sleep(0.05)
        assert run.status == "suspended"
        env.advance("1 day")
        assert run.result(timeout=5) == ["reminded bob", "reminded bob"]


def test_worlds_are_isolated():
    with world() as first:
        weekly_reminder("x")
        assert len(first.world.list_runs()) == 1
    with world() as second:
        assert second.world.list_runs() == []
