"""When this process's embedded worker starts: a freshly started app must not leave runs due.

A process that (re)starts has no worker running until something asks for one; runs orphaned
or woken meanwhile (a hook resumed by a webhook) must still go on here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import durable
from durable import step, workflow
from durable._client import get_runtime
from durable.testing import TestWorld, world
from durable.world import World


@step
def approve(order: str, answer: str) -> str:
    return f"{order}: {answer}"


@workflow
def awaits_approval(order: str) -> str:
    answer = durable.create_hook(token=f"approve:{order}").wait()
    return approve(order, answer)


@workflow
def quick(order: str) -> str:
    return approve(order, "auto")


@pytest.fixture
def env() -> Iterator[TestWorld]:
    with world(time_skipping=False) as running:
        yield running


def _restarted(memory: World) -> None:
    """A fresh runtime on the same world, as a restarted process has: its worker not started."""
    durable.configure(memory)
    assert get_runtime()._worker is None


def _status_becomes(run: durable.Run, status: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while run.status != status:  # reading the status starts no worker
        assert time.monotonic() < deadline, f"run {run.id} is still {run.status}"
        time.sleep(0.01)


def test_resume_hook_in_a_fresh_process_executes_the_run_here(env: TestWorld):
    durable.configure(worker=False)
    run = awaits_approval.with_options(execute=True).start("o-1")
    _status_becomes(run, "suspended")
    _restarted(env.world)
    durable.resume_hook("approve:o-1", "yes")  # a webhook, the first call after a restart
    _status_becomes(run, "completed")
    assert run.result(timeout=5) == "o-1: yes"


def test_resume_hook_leaves_the_run_to_workers_when_this_process_has_none(env: TestWorld):
    durable.configure(worker=False)
    run = awaits_approval.with_options(execute=True).start("o-2")
    _status_becomes(run, "suspended")
    durable.resume_hook("approve:o-2", "yes")
    time.sleep(0.1)
    assert get_runtime()._worker is None
    assert run.status != "completed"


def test_configure_worker_true_starts_the_worker_at_once(env: TestWorld):
    durable.configure(worker=False)
    run = quick.start("o-3")  # pending: this process has no worker
    assert run.status == "pending"
    durable.configure(env.world, worker=True)  # an app's startup
    _status_becomes(run, "completed")


def test_configure_without_worker_true_starts_none(env: TestWorld):
    durable.configure(worker=False)
    quick.start("o-4")
    durable.configure(env.world)
    assert get_runtime()._worker is None
