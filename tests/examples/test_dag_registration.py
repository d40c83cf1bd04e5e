"""examples/registration.yaml: parallel steps, a 24 h verification hook, and compensation."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import durable
import durable.dag
from durable import FatalError
from durable.dag import _handlers
from durable.testing import world
from examples.dag_handlers import REGISTRATION_CALLS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "registration.yaml"
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


def test_a_registration_without_a_profile_gets_an_empty_one(monkeypatch):
    profiles: list[object] = []
    create = _handlers.lookup("create_profile")
    assert create is not None

    def create_profile(user_id: str, profile: object) -> object:  # no default: it must be given
        profiles.append(profile)
        return create.fn(user_id, profile)

    monkeypatch.setitem(_handlers._registry, "create_profile",
                        _handlers.Handler("create_profile", create_profile))
    with world():
        run = durable.dag.start(EXAMPLE, {"user_id": "user-ada", "email": "ada@example.com"})
        _wait_suspended(run)
        durable.resume_hook(TOKEN, {"verified": True})
        assert run.result(timeout=10)["activated"] == {"user_id": "user-ada", "status": "active"}
    assert profiles == [{}]


def test_a_failed_profile_undoes_the_account(monkeypatch):
    def no_profile(user_id: str, profile: object = None) -> None:
        raise FatalError("the profile service refused it")

    monkeypatch.setitem(_handlers._registry, "create_profile",
                        _handlers.Handler("create_profile", no_profile))
    with world():
        run = durable.dag.start(EXAMPLE, INPUT)
        with pytest.raises(durable.WorkflowFailed) as caught:
            run.result(timeout=10)
    assert caught.value.error_message.startswith(
        "node 'profile' (handler 'create_profile') failed: FatalError"
    )
    # Nobody waits for a verification that cannot come, and the account does not outlive it.
    assert REGISTRATION_CALLS[0] == "create_account user-ada"
    assert REGISTRATION_CALLS[-1] == "delete_account user-ada"
    assert not any(c.startswith("delete_profile") for c in REGISTRATION_CALLS)


def test_a_failed_confirmation_email_leaves_the_account_active(monkeypatch):
    def send_email(to: str, template: str) -> None:
        if template == "activated":
            raise FatalError("the mail service is down")
        REGISTRATION_CALLS.append(f"send_email {template} {to}")

    monkeypatch.setitem(_handlers._registry, "send_email",
                        _handlers.Handler("send_email", send_email))
    with world():
        run = durable.dag.start(EXAMPLE, INPUT)
        _wait_suspended(run)
        durable.resume_hook(TOKEN, {"verified": True})
        with pytest.raises(durable.WorkflowFailed):
            run.result(timeout=10)
    assert REGISTRATION_CALLS[-1] == "activate_account user-ada"


def _header_commands() -> list[list[str]]:
    """The commands in the example's header comment, as written (continuations joined)."""
    lines: list[str] = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + text
        elif text.startswith("durable "):
            lines.append(text)
    return [shlex.split(line, comments=True) for line in lines]


def test_the_header_documents_a_worker_a_run_and_the_verification():
    assert [cmd[:3] for cmd in _header_commands()] == [
        ["durable", "worker", "durable.dag"],
        ["durable", "dag", "run"],
        ["durable", "resume", TOKEN],
    ]


def test_the_documented_commands_register_and_activate_the_user(tmp_path):
    """Every command in the header, exactly as written, in a fresh SQLite world."""
    script = shutil.which("durable") or str(Path(sys.executable).parent / "durable")
    if not Path(script).exists():
        pytest.skip("the `durable` console script is not installed (pip install -e .)")
    env = {**os.environ, "DURABLE_WORLD": f"sqlite:///{tmp_path}/registration.db"}
    env.pop("DURABLE_FORCE_REPLAY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def call(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *cmd[1:]], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    def status(run_id: str) -> str:
        proc = call(["durable", "inspect", run_id, "--json"])
        assert proc.returncode == 0, proc.stderr
        return str(json.loads(proc.stdout)["run"]["status"])

    worker_cmd, run_cmd, resume_cmd = _header_commands()
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([script, *worker_cmd[1:]], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        started = call(run_cmd)
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        deadline = time.monotonic() + 60
        while True:  # the verification link works once the run waits on its hook
            resumed = call(resume_cmd)
            if resumed.returncode == 0:
                break
            assert "no hook is waiting" in resumed.stderr, resumed.stderr
            assert status(run_id) not in ("failed", "completed", "cancelled"), status(run_id)
            assert time.monotonic() < deadline, "the run never waited for the verification"
            time.sleep(0.2)
        assert run_id in resumed.stdout
        while status(run_id) != "completed":
            assert status(run_id) not in ("failed", "cancelled")
            assert time.monotonic() < deadline, f"the run is still {status(run_id)}"
            time.sleep(0.2)
        detail = json.loads(call(["durable", "inspect", run_id, "--json"]).stdout)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    assert detail["run"]["result"] == {
        "user_id": "user-ada",
        "verified": {"verified": True},
        "activated": {"user_id": "user-ada", "status": "active"},
    }
    assert {n["id"]: n["status"] for n in detail["nodes"]} == {
        "account": "completed", "profile": "completed", "welcome_email": "completed",
        "verify": "completed", "activate": "completed", "confirmation_email": "completed",
    }
