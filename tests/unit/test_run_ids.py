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


def test_run_ids_ignore_the_global_random_seed_and_differ_after_fork() -> None:
    import os
    import random

    random.seed(42)
    first = new_run_id()
    random.seed(42)
    assert new_run_id()[17:] != first[17:]

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id and leave at once
        os.write(write, new_run_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child.startswith("wrun_") and child[17:] != new_run_id()[17:]
