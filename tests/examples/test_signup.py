"""examples/signup.py: a seven-day sleep takes no time in the testing world."""

from __future__ import annotations

import json
import zlib

from durable.testing import world
from examples.signup import signup


def test_signup_welcomes_then_follows_up_after_seven_days():
    user_id = f"user-{zlib.crc32(b'ada@example.com') % 10_000:04d}"
    with world() as env:
        run = signup.start("ada@example.com")
        result = run.result(timeout=10)
        slept = env.now() - env.started_at
        events = run.events()
    assert result == {"user": user_id, "status": "onboarded"}
    assert slept >= 7 * 86400
    steps = [(e.kind, e.op_id, e.name) for e in events if e.op_id is not None]
    assert steps == [
        ("step_completed", "1", "create_user"),
        ("step_completed", "2", "send_email"),
        ("sleep_started", "3", "sleep"),
        ("step_completed", "4", "send_email"),
    ]
    emails = [json.loads(e.data) for e in events if e.name == "send_email"]
    assert emails == ["welcome", "how-is-it-going"]
    assert events[-1].kind == "run_completed"


def test_signup_with_a_short_follow_up():
    with world() as env:
        assert signup("bob@example.com", follow_up_after="3s")["status"] == "onboarded"
        assert env.now() - env.started_at >= 3
