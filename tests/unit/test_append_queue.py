"""The group-commit queue: who leads a commit, who is woken, and what an interruption leaves."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from durable.world import NewEvent
from worlds.sqlite._group import AppendQueue, PendingAppend


def pending(name: str) -> PendingAppend:
    return PendingAppend(name, "owner", [NewEvent("step_completed", "1", name)], None)


def joined(queue: AppendQueue, append: PendingAppend, results: dict[str, bool]) -> threading.Thread:
    """Join ``append`` from a thread of its own; once it returns, record whether it must lead."""

    def run() -> None:
        results[append.run_id] = queue.join(append)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_queued(queue: AppendQueue, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(queue._waiting) < count:
        assert time.monotonic() < deadline, "the appends never queued"
        time.sleep(0.001)


def test_the_first_leads_and_a_finished_commit_wakes_its_appends_and_hands_on_the_lead() -> None:
    queue = AppendQueue()
    first = pending("first")
    assert queue.join(first) is True
    results: dict[str, bool] = {}
    threads = [joined(queue, pending(name), results) for name in ("a", "b")]
    wait_queued(queue, 3)
    batch = queue.take()
    assert [append.run_id for append in batch] == ["first", "a", "b"]
    later = joined(queue, pending("later"), results)
    wait_queued(queue, 1)
    queue.finish(batch)
    for thread in (*threads, later):
        thread.join(10)
    # a and b were written by the first commit; the one queued during it leads the next.
    assert results == {"a": False, "b": False, "later": True}
    assert all(append.done for append in batch)


def test_a_leader_that_withdraws_hands_the_lead_to_the_next_in_line() -> None:
    queue = AppendQueue()
    leader = pending("leader")
    assert queue.join(leader) is True
    results: dict[str, bool] = {}
    thread = joined(queue, pending("next"), results)
    wait_queued(queue, 2)
    queue.withdraw(leader)
    thread.join(10)
    assert results == {"next": True}
    assert [append.run_id for append in queue._waiting] == ["next"]


def test_the_queue_is_free_again_once_nobody_waits() -> None:
    queue = AppendQueue()
    only = pending("only")
    assert queue.join(only) is True
    queue.finish(queue.take())
    assert queue.join(pending("again")) is True


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to this process")
def test_an_interrupted_waiter_leaves_the_queue_and_the_lead_still_moves_on() -> None:
    queue = AppendQueue()
    leader = pending("leader")
    assert queue.join(leader) is True
    interrupted = pending("interrupted")
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        queue.join(interrupted)  # waits in the main thread until the signal arrives
    timer.join()
    assert all(append is not interrupted for append in queue._waiting)
    results: dict[str, bool] = {}
    thread = joined(queue, pending("after"), results)
    wait_queued(queue, 2)
    batch = queue.take()
    assert [append.run_id for append in batch] == ["leader", "after"]
    queue.finish(batch)
    thread.join(10)
    assert results == {"after": False}
