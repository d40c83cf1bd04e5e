"""A script that starts runs and simply ends: its embedded worker finishes them first."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.system._support import run_script, sqlite_url
from worlds.sqlite import SqliteWorld

SCRIPT = textwrap.dedent(
    """
    import asyncio

    import durable
    from durable import step, workflow


    @step
    def double(x: int) -> int:
        return 2 * x


    @workflow
    def branches(i: int) -> list[int]:
        return durable.parallel(lambda: double(i), lambda: double(i + 1))


    @workflow
    async def gathered(i: int) -> list[int]:
        return list(await asyncio.gather(double(i), double(i + 1)))


    for i in range(20):
        branches.start(i)
    for i in range(5):
        gathered.start(i)
    print("started")
    """
)


def test_runs_started_by_a_script_that_ends_finish_instead_of_failing(tmp_path: Path) -> None:
    # Pools refuse new work once the interpreter exits: parallel() used to fail such runs, and
    # async runs stayed `running` on the dead process until a worker took them over.
    url = sqlite_url(tmp_path / "durable.db")
    done = run_script(tmp_path, "ends.py", SCRIPT, url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    with SqliteWorld(url) as world:
        assert world.count_runs().get("completed", 0) == 25, world.count_runs()
        results = {r.workflow_name for r in world.list_runs(status="completed", limit=100)}
    assert results == {"branches", "gathered"}
