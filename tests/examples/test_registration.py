"""examples/registration.py: verification through a hook, and a saga when it never comes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
from durable import HookNotFound
from durable.testing import world
from examples.registration import SERVICES, register, verification_token

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600
USER = "user-ada"
TOKEN = "email-verified:user-ada"


@pytest.fixture(autouse=True)
def _services():
    SERVICES.reset()
    yield
    SERVICES.reset()


def _start():
    return register.start("ada", "ada@example.com", {"name": "Ada Lovelace"})


def _wait_suspended(run, timeout: float = 10.0) -> None:
    # Polls the status only: waiting on run.result() would let the testing clock skip to the
    # hook's timeout.
    deadline = time.monotonic() + timeout
    while run.status != "suspended":
        assert time.monotonic() < deadline, f"run is {run.status}"
        time.sleep(0.01)


def _log(events) -> list[tuple[str, str, str]]:
    """Steps and hook events, in log order except that the two parallel branches (which race)
    are sorted among themselves."""
    rows = [(e.kind, e.op_id, e.name) for e in events if e.op_id is not None]
    places = [i for i, row in enumerate(rows) if row[1].startswith("3.")]
    for i, row in zip(places, sorted(rows[i] for i in places), strict=True):
        rows[i] = row
    return rows


def _calls(prefixes: tuple[str, ...]) -> list[str]:
    return [c.split(" <")[0] for c in SERVICES.calls if c.startswith(prefixes)]


def test_verified_registration_is_activated():
    with world() as env:
        run = _start()
        _wait_suspended(run)
        assert verification_token(USER) == TOKEN
        assert [h.token for h in env.world.list_hooks(run.id)] == [TOKEN]
        assert durable.resume_hook(TOKEN, {"verified": True}) == run.id
        assert run.result(timeout=10) == {"user_id": USER, "status": "active"}
        assert env.now() - env.started_at < DAY
        events = run.events()
        assert env.world.list_hooks(run.id) == []
    assert _log(events) == [
        ("step_completed", "1", "create_account"),
        ("hook_created", "2", "hook"),
        ("step_completed", "3.0.1", "create_profile"),
        ("step_completed", "3.1.1", "send_email"),
        ("hook_received", "2", TOKEN),
        ("step_completed", "4", "activate_account"),
        ("step_completed", "5", "send_email"),
    ]
    assert SERVICES.accounts == {USER: "active"}
    assert SERVICES.profiles == {USER: {"name": "Ada Lovelace"}}
    assert not [c for c in SERVICES.calls if c.startswith("delete_")]
    templates = [c.split()[1] for c in SERVICES.calls if c.startswith("send_email")]
    assert templates == ["welcome", "account-activated"]


@pytest.mark.parametrize("force_replay", [False, True], ids=["live", "forced-replay"])
def test_unverified_registration_expires_after_24h_and_is_undone(force_replay):
    with world(force_replay=force_replay) as env:
        run = _start()
        assert run.result(timeout=10) == {"user_id": USER, "status": "expired"}
        waited = env.now() - env.started_at
        events = run.events()
        with pytest.raises(HookNotFound):  # a click after the deadline changes nothing
            durable.resume_hook(TOKEN, {"verified": True})
        assert run.events() == events
    assert waited >= DAY
    assert _log(events) == [
        ("step_completed", "1", "create_account"),
        ("hook_created", "2", "hook"),
        ("step_completed", "3.0.1", "create_profile"),
        ("step_completed", "3.1.1", "send_email"),
        ("hook_timed_out", "2", "hook"),
        # The saga, newest registration first: the profile (registered in a branch), then
        # the account.
        ("step_completed", "4", "delete_profile"),
        ("step_completed", "5", "delete_account"),
    ]
    done = Counter(e.op_id for e in events if e.kind == "step_completed")
    assert set(done.values()) == {1}
    assert events[-1].kind == "run_completed"
    # Every step ran once (none again on replay); the undos ran once each, in reverse order.
    assert Counter(c.split()[0] for c in SERVICES.calls) == {
        "create_account": 1,
        "create_profile": 1,
        "send_email": 1,
        "delete_profile": 1,
        "delete_account": 1,
    }
    assert _calls(("delete_",)) == ["delete_profile user-ada", "delete_account user-ada"]
    assert SERVICES.accounts == {} and SERVICES.profiles == {}


def test_a_declined_verification_is_undone_too():
    with world():
        run = _start()
        _wait_suspended(run)
        durable.resume_hook(TOKEN, {"verified": False})
        assert run.result(timeout=10) == {"user_id": USER, "status": "declined"}
        names = [e.name for e in run.events() if e.kind == "step_completed"]
    assert names[-2:] == ["delete_profile", "delete_account"]
    assert "activate_account" not in names
    assert SERVICES.accounts == {}


def test_a_click_as_soon_as_the_hook_exists_is_kept():
    with world(time_skipping=False):
        run = _start()
        deadline = time.monotonic() + 10
        while True:  # resume as soon as the hook exists, possibly before the wait
            try:
                durable.resume_hook(TOKEN, {"verified": True})
                break
            except HookNotFound:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        assert run.result(timeout=10)["status"] == "active"


def test_the_script_runs_on_the_default_world(tmp_path):
    env = dict(os.environ)
    env.pop("DURABLE_WORLD", None)
    env.pop("DURABLE_FORCE_REPLAY", None)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "registration.py"), "1s"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "resumed hook email-verified:user-ada-" in out
    assert "'status': 'active'" in out
    assert "nobody verifies it within 1s" in out and "'status': 'expired'" in out
    undo = [line.split()[0] for line in out.splitlines() if line.strip().startswith("delete_")]
    assert undo == ["delete_profile", "delete_account"]
    assert (tmp_path / ".durable" / "durable.db").exists()
