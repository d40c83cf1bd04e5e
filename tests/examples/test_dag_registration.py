"""examples/registration.yaml: parallel steps, a 24 h verification hook, and compensation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import durable
import durable.dag
from durable.testing import world
from examples.dag_handlers import REGISTRATION_CALLS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registration.yaml"
DAY = 24 * 3600
INPUT = {"user_id": "user-ada", "email": "ada@example.com", "profile": {"name": "Ada"}}
TOKEN = "email-verified:user-ada"


@pytest.fixture(autouse=True)
def _calls():
    REGISTRATION_CALLS.clear()
    yield
    REGISTRATION_CALLS.clear()


def _wait_suspended(run, timeout: float = 10.0) -> None:
    # Polls the status only: waiting on run.result() would let the clock skip to the timeout.
    deadline = time.monotonic() + timeout
    while run.status != "suspended":
        assert time.monotonic() < deadline, f"run is {run.status}"
        time.sleep(0.01)


def test_registration_spec_is_valid():
    spec = durable.dag.validate(durable.dag.load_file(EXAMPLE))
    assert durable.dag.waves(spec)[:3] == [["account"], ["profile", "welcome_email"], ["verify"]]


def test_verified_registration_is_activated():
    with world() as env:
        run = durable.dag.start(EXAMPLE, INPUT)
        _wait_suspended(run)
        assert [h.token for h in env.world.list_hooks(run.id)] == [TOKEN]
        assert durable.resume_hook(TOKEN, {"verified": True}) == run.id
        result = run.result(timeout=10)
        assert env.now() - env.started_at < DAY
    assert result == {
        "user_id": "user-ada",
        "verified": {"verified": True},
        "activated": {"user_id": "user-ada", "status": "active"},
    }
    assert REGISTRATION_CALLS[0] == "create_account user-ada"
    assert sorted(REGISTRATION_CALLS[1:3]) == [
        "create_profile user-ada", "send_email welcome ada@example.com"
    ]
    assert REGISTRATION_CALLS[3:] == [
        "activate_account user-ada", "send_email activated ada@example.com"
    ]


def test_unverified_registration_is_compensated_after_24_hours():
    with world() as env:
        run = durable.dag.start(EXAMPLE, INPUT)
        with pytest.raises(durable.WorkflowFailed) as caught:
            run.result(timeout=10)  # the testing clock skips the 24 h wait
        assert env.now() - env.started_at >= DAY
        with pytest.raises(durable.HookNotFound):
            durable.resume_hook(TOKEN, {"verified": True})
        undo_steps = [e.name for e in run.events() if e.kind == "step_completed"][3:]
    assert caught.value.error_type.endswith("DagNodeFailed")
    assert caught.value.error_message.startswith(
        "node 'verify' (handler 'hook') failed: HookTimeout"
    )
    assert REGISTRATION_CALLS[0] == "create_account user-ada"
    # Newest first: the profile (wave 2), then the account (wave 1); the email has no undo.
    assert REGISTRATION_CALLS[3:] == ["delete_profile user-ada", "delete_account user-ada"]
    assert undo_steps == ["delete_profile", "delete_account"]
