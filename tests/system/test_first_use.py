"""Threads that use durable for the first time at once share one runtime and one world."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.system._support import run_script, sqlite_url

SCRIPT = textwrap.dedent(
    """
    from concurrent.futures import ThreadPoolExecutor

    from durable import step, workflow


    @step
    def echo(i: int) -> int:
        return i


    @workflow
    def flow(i: int) -> int:
        return echo(i)


    # Nothing has touched durable yet: every thread's first call configures it.
    with ThreadPoolExecutor(16) as pool:
        print(list(pool.map(lambda i: flow.start(i).result(timeout=60), range(16))))
    """
)


@pytest.mark.parametrize("world", ["sqlite", "memory"])
def test_threads_starting_runs_at_once_on_first_use_share_one_world(
    tmp_path: Path, world: str
) -> None:
    url = sqlite_url(tmp_path / "durable.db") if world == "sqlite" else "memory://"
    done = run_script(tmp_path, "first_use.py", SCRIPT, url, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(list(range(16)))
    assert "closed" not in done.stderr
