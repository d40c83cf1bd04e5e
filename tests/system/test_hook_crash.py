"""SIGKILL a worker while its run waits on a hook (or is mid-step before the wait); resume the
hook with the real `durable resume` from another process; a fresh worker completes the run.

The workflow lives in this module: the workers run ``durable worker tests.system.test_hook_crash``.
Every step attempt appends ``"{step} {tag} {pid}"`` to the file named by HOOK_CRASH_EFFECTS;
``hc_prepare`` then waits until the file named by HOOK_CRASH_GATE (if set) exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import durable
from tests.system._support import (
    ROOT,
    Procs,
    durable_command,
    env_for,
    local_durable,
    sqlite_url,
    wait_until,
)
from worlds.sqlite import SqliteWorld

MODULE = "tests.system.test_hook_crash"
WORKER_OPTIONS = ("--lease-ttl", "2", "--poll-interval", "0.05")


def _effect(step: str, tag: str) -> None:
    with open(os.environ["HOOK_CRASH_EFFECTS"], "a", encoding="utf-8") as file:
        file.write(f"{step} {tag} {os.getpid()}\n")


@durable.step(name="hc_prepare")
def prepare(tag: str) -> str:
    _effect("prepare", tag)
    gate = os.environ.get("HOOK_CRASH_GATE")
    deadline = time.monotonic() + 30
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return f"prepared {tag}"


@durable.step(name="hc_finish")
def finish(tag: str, payload: dict[str, Any]) -> str:
    _effect("finish", tag)
    return f"finished {tag} with {sorted(payload)}"


@durable.workflow(name="hook_crash")
def hook_crash(tag: str) -> dict[str, Any]:
    prepared = prepare(tag)
    payload = durable.create_hook(token=f"crash:{tag}", timeout="1h").wait()
    return {"prepared": prepared, "payload": payload, "finished": finish(tag, payload)}


# -- helpers -----------------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*durable_command(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def _listed_hooks(env: dict[str, str]) -> list[tuple[str, str, str]]:
    proc = _cli(env, "hooks", "--json")
    assert proc.returncode == 0, proc.stderr
    return [(h["token"], h["run_id"], h["op_id"]) for h in json.loads(proc.stdout)["hooks"]]


def _resume(env: dict[str, str], token: str, payload: str, run_id: str) -> None:
    proc = _cli(env, "resume", token, payload)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"resumed run {run_id} (hook {token})"


def _effects(path: Path, tag: str) -> list[tuple[str, int]]:
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(step, int(pid)) for step, t, pid in rows if t == tag]


def _status(world, run_id: str) -> str:
    return str(world.get_run(run_id).status)


def _assert_completed_once(world, run_id: str, tag: str, payload: dict[str, Any]) -> None:
    assert durable.get_run(run_id).result(timeout=5) == {
        "prepared": f"prepared {tag}",
        "payload": payload,
        "finished": f"finished {tag} with {sorted(payload)}",
    }
    events = world.read_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = Counter(e.kind for e in events)
    assert kinds["hook_created"] == 1 and kinds["hook_received"] == 1, kinds
    assert kinds["run_completed"] == 1 and events[-1].kind == "run_completed", kinds
    done = [(e.op_id, e.name) for e in events if e.kind == "step_completed"]
    assert done == [("1", "hc_prepare"), ("3", "hc_finish")]


def _assert_unknown_token_is_one_line(env: dict[str, str], token: str) -> None:
    proc = _cli(env, "resume", token, '{"verified": true}')
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"no hook is waiting for token {token!r}" in lines[0]
    assert "Traceback" not in proc.stderr


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_sigkill_while_suspended_on_a_hook(tmp_path: Path, procs: Procs):
    url = sqlite_url(tmp_path / "hooks.db")
    effects = tmp_path / "effects.txt"
    env = env_for(url, HOOK_CRASH_EFFECTS=str(effects))
    payload = {"verified": True, "by": "cli"}
    with local_durable(url) as runtime:
        world = runtime.world
        run = hook_crash.with_options(run_id="hc-suspended", execute=False).start("a")
        victim = procs.worker([MODULE], env, *WORKER_OPTIONS)
        wait_until(lambda: _status(world, run.id) == "suspended", 30, "the run to wait")
        assert _listed_hooks(env) == [("crash:a", run.id, "2")]
        victim.kill()

        # No worker is alive: the payload is recorded and waits for one.
        _resume(env, "crash:a", json.dumps(payload), run.id)
        rescuer = procs.worker([MODULE], env, *WORKER_OPTIONS)
        wait_until(lambda: _status(world, run.id) == "completed", 30, "the run to complete")
        assert rescuer.stop() == 0, rescuer.stderr.text
        assert "Traceback" not in rescuer.stderr.text + victim.stderr.text

        _assert_completed_once(world, run.id, "a", payload)
        # Each step ran once: the first in the killed worker, the last in the fresh one.
        assert _effects(effects, "a") == [("prepare", victim.pid), ("finish", rescuer.pid)]
        assert _listed_hooks(env) == []
        _assert_unknown_token_is_one_line(env, "crash:a")  # a finished run's token


@pytest.mark.timeout(90)
def test_sigkill_mid_step_before_the_wait(tmp_path: Path, procs: Procs):
    url = sqlite_url(tmp_path / "hooks.db")
    effects = tmp_path / "effects.txt"
    gate = tmp_path / "gate"
    env = env_for(url, HOOK_CRASH_EFFECTS=str(effects), HOOK_CRASH_GATE=str(gate))
    payload = {"verified": True, "n": 2}
    with local_durable(url) as runtime:
        world = runtime.world
        run = hook_crash.with_options(run_id="hc-mid-step", execute=False).start("b")
        victim = procs.worker([MODULE], env, *WORKER_OPTIONS)
        wait_until(lambda: _effects(effects, "b"), 30, "the first step to start")
        victim.kill()  # inside hc_prepare: its result is not recorded
        assert [e.kind for e in world.read_events(run.id)] == ["run_created"]
        assert _listed_hooks(env) == []

        gate.touch()
        rescuer = procs.worker([MODULE], env, *WORKER_OPTIONS)  # takes over once the lease ends
        wait_until(lambda: world.list_hooks(run.id), 30, "the fresh worker to reach the wait")
        assert _listed_hooks(env) == [("crash:b", run.id, "2")]
        _resume(env, "crash:b", json.dumps(payload), run.id)
        wait_until(lambda: _status(world, run.id) == "completed", 30, "the run to complete")
        assert rescuer.stop() == 0, rescuer.stderr.text
        assert "Traceback" not in rescuer.stderr.text + victim.stderr.text

        _assert_completed_once(world, run.id, "b", payload)
        # The step in flight at the kill ran once more; nothing else repeated.
        assert _effects(effects, "b") == [
            ("prepare", victim.pid),
            ("prepare", rescuer.pid),
            ("finish", rescuer.pid),
        ]
        assert _listed_hooks(env) == []


def test_resume_of_an_unknown_token_is_one_clear_line(tmp_path: Path):
    url = sqlite_url(tmp_path / "hooks.db")
    SqliteWorld(url).close()  # the world exists; the token does not
    _assert_unknown_token_is_one_line(env_for(url), "email-verified:nobody")
