"""Hooks through the engine, on every world, live and under forced replay."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import BaseModel

import durable
from durable import HookConflict, HookNotFound, HookTimeout, step, workflow
from tests.conformance.load import volume

seen: list[str] = []


@pytest.fixture(autouse=True)
def _clear():
    seen.clear()


@step
def note(text: str) -> str:
    seen.append(text)
    return text


def wait_status(run, status: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while run.status != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run.id} is {run.status}, expected {status}")
        time.sleep(0.01)


def hook_token(engine, run) -> str:
    deadline = time.monotonic() + 10
    while True:
        hooks = engine.world.list_hooks(run.id)
        if hooks:
            return hooks[0].token
        if time.monotonic() > deadline:
            raise AssertionError("no hook was created")
        time.sleep(0.01)


@workflow
def approval(order: str) -> str:
    note(f"requested {order}")
    hook = durable.create_hook(token=f"approve:{order}", timeout="1 day")
    decision = hook.wait()
    return note(f"{order} {decision['verdict']}")


def test_resume_delivers_payload(engine):
    engine.runtime.options.time_skipping = None
    run = approval.start("A1")
    hook_token(engine, run)  # not just "suspended": forced replay suspends at every step
    assert durable.resume_hook("approve:A1", {"verdict": "approved"}) == run.id
    assert run.result(timeout=10) == "A1 approved"
    assert seen == ["requested A1", "A1 approved"]
    with pytest.raises(HookNotFound):
        durable.resume_hook("approve:A1", {"verdict": "again"})


def test_timeout_raises_in_workflow_and_late_resume_fails(engine):
    @workflow(name="timeboxed")
    def timeboxed() -> str:
        hook = durable.create_hook(token="tb", timeout="2h")
        try:
            return hook.wait()
        except HookTimeout:
            return note("timed out")

    run = timeboxed.start()
    assert run.result(timeout=10) == "timed out"
    before = run.events()
    with pytest.raises(HookNotFound):
        durable.resume_hook("tb", "late")
    assert run.events() == before


def test_payload_resumed_before_the_wait_is_kept(engine):
    engine.runtime.options.time_skipping = None
    gate = threading.Event()

    @step
    def slow() -> None:
        gate.wait(10)

    @workflow(name="early_payload")
    def early() -> str:
        hook = durable.create_hook(token="early")
        slow()
        return hook.wait()

    run = early.start()
    hook_token(engine, run)
    durable.resume_hook("early", "kept")
    gate.set()
    assert run.result(timeout=10) == "kept"


@workflow
def hook_with_token(token: str) -> str:
    try:
        durable.create_hook(token=token)
    except ValueError as exc:
        return str(exc)
    return "created"


def test_a_token_not_every_world_could_store_is_refused_in_the_workflow(engine):
    assert hook_with_token.start("t" * 300).result(timeout=10) == (
        "hook token is 300 characters long; the most is 256: use a shorter one "
        "(a hash of a long business key, say)"
    )
    assert "control characters" in hook_with_token.start("a\tb").result(timeout=10)
    assert hook_with_token.start("é" * 256).result(timeout=10) == "created"


def test_caller_chosen_token_clash_is_a_clear_error(engine):
    engine.runtime.options.time_skipping = None

    @workflow(name="holder")
    def holder() -> str:
        return durable.create_hook(token="shared").wait()

    @workflow(name="clasher")
    def clasher() -> str:
        try:
            durable.create_hook(token="shared")
        except HookConflict as exc:
            return str(exc)
        return "no clash"

    first = holder.start()
    hook_token(engine, first)
    message = clasher.start().result(timeout=10)
    assert "shared" in message and first.id in message
    durable.resume_hook("shared", "done")
    assert first.result(timeout=10) == "done"


class Verified(BaseModel):
    user_id: int
    email: str


@workflow
def iterate_payloads() -> list[object]:
    hook = durable.create_hook(model=Verified)
    note(hook.token)
    got = []
    for payload in hook:
        got.append(payload.user_id)
        if len(got) == 3:
            hook.dispose()
    return got


def test_iterating_a_hook_receives_payloads_until_disposed(engine):
    engine.runtime.options.time_skipping = None
    run = iterate_payloads.start()
    token = hook_token(engine, run)
    assert len(token) >= 22  # random tokens carry 128 bits
    for user in (1, 2, 3):
        durable.resume_hook(token, {"user_id": user, "email": f"u{user}@x.org"})
    assert run.result(timeout=10) == [1, 2, 3]
    with pytest.raises(HookNotFound):
        durable.resume_hook(token, {"user_id": 4, "email": "late@x.org"})


@workflow
async def async_hook() -> str:
    hook = durable.create_hook(token="async-hook")
    return await hook


def test_async_workflows_await_hooks(engine):
    engine.runtime.options.time_skipping = None
    run = async_hook.start()
    hook_token(engine, run)
    durable.resume_hook("async-hook", "from outside")
    assert run.result(timeout=10) == "from outside"


def test_many_hooks_resumed_concurrently_each_once(engine):
    engine.runtime.options.time_skipping = None

    @workflow(name="many_hooks")
    def many(i: int) -> int:
        return durable.create_hook(token=f"many:{i}").wait()

    n = volume(engine.world, 100)
    runs = [many.start(i) for i in range(n)]
    for run in runs:
        hook_token(engine, run)
    errors: list[BaseException] = []

    def resume(part: int) -> None:
        try:
            for i in range(part, n, 4):
                durable.resume_hook(f"many:{i}", i * 10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=resume, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [run.result(timeout=30) for run in runs] == [i * 10 for i in range(n)]
    for run in runs:
        received = [e for e in run.events() if e.kind == "hook_received"]
        assert len(received) == 1


def test_invalid_payload_is_refused_at_resume_and_nothing_is_delivered(engine):
    engine.runtime.options.time_skipping = None
    run = iterate_payloads.start()
    token = hook_token(engine, run)
    before = [e for e in run.events() if e.kind == "hook_received"]
    with pytest.raises(durable.PayloadInvalid, match="Verified") as caught:
        durable.resume_hook(token, {"user_id": "not a number", "email": 3})
    assert "\n" not in str(caught.value)  # pydantic's multi-line report, on one line
    assert [e for e in run.events() if e.kind == "hook_received"] == before
    for user in (1, 2, 3):
        durable.resume_hook(token, {"user_id": user, "email": f"u{user}@x.org"})
    assert run.result(timeout=10) == [1, 2, 3]


@workflow
async def async_iterate() -> list[int]:
    hook = durable.create_hook(token="async-iter")
    got = []
    async for payload in hook:
        got.append(payload)
        if len(got) == 2:
            hook.dispose()
    return got


def test_async_for_receives_payloads_until_disposed(engine):
    engine.runtime.options.time_skipping = None
    run = async_iterate.start()
    hook_token(engine, run)
    durable.resume_hook("async-iter", 1)
    durable.resume_hook("async-iter", 2)
    assert run.result(timeout=10) == [1, 2]
    with pytest.raises(HookNotFound):
        durable.resume_hook("async-iter", 3)


@workflow
def hook_beside_a_step() -> list:
    hook = durable.create_hook(token="beside")

    def waiter():
        time.sleep(0.05)  # the step's write is in flight when the wait reads the log
        return hook.wait()

    return durable.parallel(waiter, lambda: note("beside"))


def test_a_payload_arriving_while_another_branch_writes_wakes_the_run(engine, monkeypatch):
    # A branch's step write that returns late (committed, not yet counted by the run) must not
    # be counted twice when the hook's wait reads the log meanwhile: the suspension would then
    # take the payload resumed next for that write, and the run would sleep forever.
    engine.runtime.options.time_skipping = None
    append = engine.world.append

    def slow_to_return(run_id, owner, events, update=None):
        result = append(run_id, owner, events, update)
        if any(e.kind == "step_completed" for e in events):
            time.sleep(0.3)
        return result

    monkeypatch.setattr(engine.world, "append", slow_to_return)
    run = hook_beside_a_step.start()
    hook_token(engine, run)
    time.sleep(0.1)
    durable.resume_hook("beside", "payload")
    assert run.result(timeout=10) == ["payload", "beside"]


_slow_may_end = threading.Event()


@step
def slow_sibling() -> str:
    _slow_may_end.wait(10)
    return "slow done"


@step
def after_approval(payload: str) -> str:
    _slow_may_end.set()  # the slow sibling ends only once this ran
    return f"after {payload}"


@workflow
def hook_beside_a_slow_step() -> list:
    hook = durable.create_hook(token="beside-slow")
    return durable.parallel(lambda: after_approval(hook.wait()), slow_sibling)


def test_a_branch_whose_hook_is_resumed_goes_on_while_a_sibling_still_runs(engine):
    # It used to suspend at once and could only go on after a fresh execution, which waited
    # for the slow sibling to end: the sibling here waits for it, so it would take 10 s.
    if engine.forced_replay:
        pytest.skip("forced replay suspends at every durable point by design")
    engine.runtime.options.time_skipping = None
    _slow_may_end.clear()
    run = hook_beside_a_slow_step.start()
    hook_token(engine, run)
    started = time.monotonic()
    durable.resume_hook("beside-slow", "ok")
    assert run.result(timeout=20) == ["after ok", "slow done"]
    assert time.monotonic() - started < 5


def _wait_for_one_hook(token: str) -> int:
    hook = durable.create_hook(token=token)
    hook.wait()
    hook.dispose()
    return int(token.rsplit(":", 1)[1])


async def _await_one_hook(token: str) -> int:
    hook = durable.create_hook(token=token)
    await hook
    hook.dispose()
    return int(token.rsplit(":", 1)[1])


@workflow
def limited_waits(n: int) -> list[int]:
    return durable.map(_wait_for_one_hook, [f"limited:{i}" for i in range(n)], max_concurrency=2)


@workflow
async def async_limited_waits(n: int) -> list[int]:
    return await durable.map(
        _await_one_hook, [f"limited:{i}" for i in range(n)], max_concurrency=2
    )


def _open_hooks(engine, run) -> set[str]:
    return {hook.token for hook in engine.world.list_hooks(run.id)}


def _settled_hooks(engine, run, expected: set[str]) -> set[str]:
    deadline = time.monotonic() + 10
    while _open_hooks(engine, run) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # a run starting more branches than allowed would have done so by now
    return _open_hooks(engine, run)


@pytest.mark.parametrize("flow", [limited_waits, async_limited_waits], ids=["sync", "async"])
def test_map_max_concurrency_holds_while_branches_wait(engine, flow):
    engine.runtime.options.time_skipping = None
    run = flow.start(5)
    assert _settled_hooks(engine, run, {"limited:0", "limited:1"}) == {"limited:0", "limited:1"}
    for i in range(4):
        durable.resume_hook(f"limited:{i}", True)
        expected = {f"limited:{j}" for j in range(i + 1, min(i + 3, 5))}
        assert _settled_hooks(engine, run, expected) == expected
    durable.resume_hook("limited:4", True)
    assert run.result(timeout=10) == [0, 1, 2, 3, 4]
