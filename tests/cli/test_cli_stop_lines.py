"""What a stopping worker says about the steps it waits for."""

from __future__ import annotations

import threading

import durable
import durable.testing
from cli._stopping import describe_runs

_release = threading.Event()
_started = threading.Semaphore(0)


@durable.step
def crawl(page: int) -> int:
    _started.release()
    assert _release.wait(10)
    return page


@durable.step
def index_page() -> str:
    _started.release()
    assert _release.wait(10)
    return "ok"


@durable.workflow
def crawler() -> list[int]:
    pages, _ = durable.parallel(lambda: durable.map(crawl, range(5)), index_page)
    return pages


def test_steps_running_many_times_at_once_are_counted_not_listed():
    _release.clear()
    with durable.testing.world():
        run = crawler.start()
        try:
            for _ in range(6):
                assert _started.acquire(timeout=10)
            line = describe_runs({run.id: "crawler"})
        finally:
            _release.set()
        # Threads are listed in no set order.
        assert line in (f"{run.id} (crawler, steps 'crawl' x5, 'index_page')",
                        f"{run.id} (crawler, steps 'index_page', 'crawl' x5)")
        assert run.result(timeout=10) == [0, 1, 2, 3, 4]


def test_a_stopping_worker_names_ten_runs_and_counts_the_rest():
    runs = {f"wrun_{i}": "flow" for i in range(63)}
    line = describe_runs(runs)
    assert line.count("(flow)") == 10
    assert line.endswith("and 53 more (durable runs --status running)")
