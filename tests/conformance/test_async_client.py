"""start_async / resume_hook_async leave the caller's event loop free while the world is written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
import durable.testing
from durable import step, workflow
from durable._client import use_runtime
from durable._runtime import Runtime, RuntimeOptions
from durable.world import open_world


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "app.db"
    runtime = Runtime(open_world(f"sqlite:///{path}"), RuntimeOptions())
    previous = use_runtime(runtime)
    try:
        yield path
    finally:
        use_runtime(previous)
        runtime.stop()
        runtime.world.close()


@step
def greet(name: str) -> str:
    return f"hi {name}"


@workflow
def welcome(name: str) -> str:
    hook = durable.create_hook(token=f"clicked:{name}")
    hook.wait()
    return greet(name)


def _hold_the_file(path: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another process's long write: the file is locked for ``seconds``."""
    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


async def _ticks_while(awaitable):
    """Await ``awaitable`` and count how often the loop ran a 10 ms ticker meanwhile."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await awaitable
    finally:
        done = True
        await task
    return result, ticks


async def test_start_async_does_not_block_the_loop_while_the_file_is_locked(db):
    welcome.start("warm")  # the schema exists: the lock below is the only wait
    held = threading.Event()
    holder = _hold_the_file(db, 0.8, held)
    assert held.wait(5)
    run, ticks = await _ticks_while(welcome.with_options(run_id="w-1").start_async("ada"))
    holder.join()
    assert run.id == "w-1"
    assert ticks >= 20, f"the loop ran its ticker {ticks} times in 0.8 s"


async def test_resume_hook_async_does_not_block_the_loop(db):
    run = welcome.with_options(run_id="w-2").start("bob")
    deadline = time.monotonic() + 10
    while run.status != "suspended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    held = threading.Event()
    holder = _hold_the_file(db, 0.8, held)
    assert held.wait(5)
    run_id, ticks = await _ticks_while(durable.resume_hook_async("clicked:bob", "yes"))
    holder.join()
    assert run_id == "w-2" and ticks >= 20
    assert await run.wait(timeout=10) == "hi bob"


@workflow
async def parent() -> str:
    child = await welcome.start_async("child")  # in workflow code: the engine's child start
    return child.id


def test_start_async_in_workflow_code_starts_a_child_run():
    with durable.testing.world():
        run = parent.start()
        child_id = run.result(timeout=10)
        assert durable.get_run(child_id).parent_id == run.id
