"""Lease owner ids of processes on this host that have exited (judged dead at once)."""

from __future__ import annotations

import subprocess
import sys

from durable.world import make_owner_id


def exited_pid() -> int:
    """The pid of a process that has just exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def exited_owner(tag: str = "deadbeef") -> str:
    """An owner id as this process would make, naming a process that has exited."""
    return f"{make_owner_id().partition(':')[0]}:{exited_pid()}:{tag}"
