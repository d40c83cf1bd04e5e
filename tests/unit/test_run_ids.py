"""Run ids the runtime makes: unique, and in creation order."""

from __future__ import annotations

import re
import time

from durable._runtime import new_run_id


def test_run_ids_are_unique_and_sort_by_creation_time() -> None:
    first = [new_run_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_run_id()
    assert len(set(first)) == 1000
    assert all(re.fullmatch(r"wrun_[0-9a-f]{32}", run_id) for run_id in first)
    assert max(first) < later
    millis = int(later[5:17], 16)
    assert abs(millis / 1000 - time.time()) < 5
