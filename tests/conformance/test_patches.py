"""Changing a workflow's code under runs in flight: ``durable.patched`` / ``deprecate_patch``.

Each test deploys a new version of a workflow (under the same name) while a run of the old one
sleeps, then lets the run go on. Every world, live and under forced replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import durable
import durable._decorators as decorators
import durable.testing
from durable import ConfigurationError, NonDeterminismError, WorkflowFailed, step, workflow
from tests.cancelling import wait_asleep

done: list[str] = []
_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    done.clear()
    yield
    done.clear()


@step(name="patches.work")
def work(label: str) -> str:
    with _lock:
        done.append(label)
    return label


@workflow(name="patches.signup")
def signup_v1() -> list[Any]:
    work("a")
    durable.sleep("1 day")
    work("b")
    return ["v1"]


def signup_v2() -> list[Any]:
    work("a")
    early = durable.patched("early")  # where a v1 run recorded its sleep
    if early:
        work("early")
    durable.sleep("1 day")
    late = durable.patched("late")  # where a sleeping v1 run has not been yet
    if late:
        work("late")
    work("b")
    return [early, late]


def signup_v3() -> list[Any]:
    work("a")
    durable.deprecate_patch("early")
    work("early")
    durable.sleep("1 day")
    late = durable.patched("late")
    if late:
        work("late")
    work("b")
    return ["v3", late]


def signup_v3_without_deprecation() -> list[Any]:
    work("a")
    work("early")
    durable.sleep("1 day")
    work("b")
    return ["v3"]


@contextlib.contextmanager
def deployed(fn: Callable[..., Any], name: str = "patches.signup") -> Iterator[None]:
    """Run ``fn`` as the workflow ``name`` meanwhile, as a new deployment of its code would."""
    original = decorators.swap_code(name, fn)
    try:
        yield
    finally:
        decorators.swap_code(name, original)


def asleep(engine: Any, run: durable.Run) -> None:
    """Until the run sleeps its day."""
    wait_asleep(run, engine.world, longer_than=3600)


def test_a_run_keeps_the_old_path_where_it_passed_and_takes_the_new_one_after(engine):
    engine.runtime.options.time_skipping = None
    old = signup_v1.start()
    asleep(engine, old)
    with deployed(signup_v2):
        engine.clock.advance("2 days")
        assert old.result(timeout=10) == [False, True]
        assert done.count("early") == 0 and done.count("late") == 1

        new = signup_v1.start()  # the workflow's name now runs v2's code
        asleep(engine, new)
        engine.clock.advance("2 days")
        assert new.result(timeout=10) == [True, True]
    assert done.count("early") == 1 and done.count("late") == 2
    assert done.count("a") == 2 and done.count("b") == 2  # no step ran twice
    markers = [e.name for e in new.events() if e.kind == "value_recorded"]
    assert markers == ["patched:early", "patched:late"]


def test_deprecate_patch_replays_runs_that_recorded_the_patch(engine):
    engine.runtime.options.time_skipping = None
    with deployed(signup_v2):
        patched_run = signup_v1.start()
        asleep(engine, patched_run)
    with deployed(signup_v3):
        engine.clock.advance("2 days")
        assert patched_run.result(timeout=10) == ["v3", True]
        fresh = signup_v1.start()
        asleep(engine, fresh)
        engine.clock.advance("2 days")
        assert fresh.result(timeout=10) == ["v3", True]
    assert done.count("early") == 2  # once per run: the replayed run did not run it again
    assert [e.name for e in fresh.events() if e.kind == "value_recorded"] == ["patched:late"]


def test_a_removed_patch_call_names_the_marker_and_the_fix(engine):
    engine.runtime.options.time_skipping = None
    with deployed(signup_v2):
        run = signup_v1.start()
        asleep(engine, run)
    before = run.events()
    with deployed(signup_v3_without_deprecation):
        engine.clock.advance("2 days")
        with pytest.raises(WorkflowFailed) as info:
            run.result(timeout=10)
    assert isinstance(info.value.cause, NonDeterminismError)
    message = info.value.error_message
    assert "the log recorded durable.patched('early'), the code now calls step" in message
    assert 'durable.deprecate_patch(\\"change-id\\")' not in message
    assert 'durable.deprecate_patch("change-id")' in message
    assert run.events()[: len(before)] == before


@workflow(name="patches.fan_out")
def fan_out_v1(items: list[str]) -> list[Any]:
    durable.map(work, items)
    durable.sleep("1 day")
    return list(durable.map(work, [f"{item}-again" for item in items]))


def _branch_v2(item: str) -> Any:
    if durable.patched("upper"):
        return work(item.upper())
    return work(item)


def fan_out_v2(items: list[str]) -> list[Any]:
    durable.map(_branch_v2, items)
    durable.sleep("1 day")
    return list(durable.map(_branch_v2, [f"{item}-again" for item in items]))


def test_each_branch_decides_at_its_own_point(engine):
    engine.runtime.options.time_skipping = None
    run = fan_out_v1.start(["x", "y"])
    asleep(engine, run)
    with deployed(fan_out_v2, "patches.fan_out"):
        engine.clock.advance("2 days")
        assert run.result(timeout=10) == ["X-AGAIN", "Y-AGAIN"]
    assert sorted(done) == ["X-AGAIN", "Y-AGAIN", "x", "y"]


def test_patched_outside_a_workflow_or_in_a_step_is_true():
    assert durable.patched("anything") is True
    durable.deprecate_patch("anything")  # nothing to replay outside a workflow

    @step(name="patches.in_step")
    def in_step() -> bool:
        return durable.patched("in-step")

    @workflow(name="patches.steps_ask")
    def steps_ask() -> bool:
        return in_step()

    with durable.testing.world():
        run = steps_ask.start()
        assert run.result(timeout=10) is True
        assert [e.kind for e in run.events()].count("value_recorded") == 0


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_a_patch_id_must_name_the_change(bad: Any):
    with pytest.raises(ConfigurationError, match="a patch id must be a non-empty string"):
        durable.patched(bad)
    with pytest.raises(ConfigurationError, match="a patch id must be a non-empty string"):
        durable.deprecate_patch(bad)


@step(name="patches.charge")
def charge(card: str) -> str:
    with _lock:
        done.append(f"charge {card}")
    return card


@workflow(name="patches.charges")
def charges_v1() -> list[Any]:
    durable.parallel(lambda: charge("c1"), lambda: charge("c2"))
    durable.sleep("1 day")
    return ["v1"]


def charges_v2() -> list[Any]:
    express = durable.patched("express")  # where a v1 run recorded a group's branches
    if express:
        charge("express")
    durable.parallel(lambda: charge("c1"), lambda: charge("c2"))
    durable.sleep("1 day")
    return [express]


def charges_without_a_group() -> list[Any]:
    charge("c1")  # where v1 ran a group: replaying it live would charge again
    durable.sleep("1 day")
    return ["changed"]


def charges_with_a_group_later() -> list[Any]:
    durable.sleep("1 day")  # where v1 ran a group
    durable.parallel(lambda: charge("c1"), lambda: charge("c2"))  # where v1 slept
    return ["changed"]


def test_a_patch_before_a_group_the_run_passed_is_false(engine):
    engine.runtime.options.time_skipping = None
    old = charges_v1.start()
    asleep(engine, old)
    with deployed(charges_v2, "patches.charges"):
        engine.clock.advance("2 days")
        assert old.result(timeout=10) == [False]
        new = charges_v1.start()
        asleep(engine, new)
        engine.clock.advance("2 days")
        assert new.result(timeout=10) == [True]
    assert sorted(done) == sorted(["charge c1", "charge c2"] * 2 + ["charge express"])


@pytest.mark.parametrize("changed", [charges_without_a_group, charges_with_a_group_later])
def test_a_step_or_sleep_where_the_log_has_a_group_is_a_non_determinism_error(engine, changed):
    engine.runtime.options.time_skipping = None
    run = charges_v1.start()
    asleep(engine, run)
    with deployed(changed, "patches.charges"):
        engine.clock.advance("2 days")
        with pytest.raises(WorkflowFailed) as failed:
            run.result(timeout=10)
    assert isinstance(failed.value.cause, NonDeterminismError)
    assert "a group of branches (durable.parallel()" in failed.value.error_message
    assert sorted(done) == ["charge c1", "charge c2"]  # nothing ran again


@workflow(name="patches.charges_async")
async def charges_async_v1() -> list[Any]:
    await asyncio.gather(charge.run_async("c1"), charge.run_async("c2"))
    await _nap()
    return ["v1"]


async def _nap() -> None:
    await durable.sleep("1 day")


async def charges_async_v2() -> list[Any]:
    express = durable.patched("express")
    if express:
        await charge.run_async("express")
    await asyncio.gather(charge.run_async("c1"), charge.run_async("c2"))
    await _nap()
    return [express]


def test_a_patch_before_an_async_gather_the_run_passed_is_false(engine):
    engine.runtime.options.time_skipping = None
    old = charges_async_v1.start()
    asleep(engine, old)
    with deployed(charges_async_v2, "patches.charges_async"):
        engine.clock.advance("2 days")
        assert old.result(timeout=10) == [False]
    assert sorted(done) == ["charge c1", "charge c2"]
