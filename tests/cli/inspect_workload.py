"""Workflows for the tests of what `durable runs`, `inspect` and `events` print."""

from __future__ import annotations

import durable
from durable import step, workflow


@step
def inc(i: int) -> int:
    return i + 1


@workflow
def many(n: int) -> int:
    """``n`` steps, one after another."""
    return sum(inc(i) for i in range(n))


@workflow
def napper() -> str:
    """Sleeps for an hour."""
    durable.sleep("1h")
    return "rested"


@workflow
def waits_for_child() -> str:
    """Starts ``napper`` as a child run and waits for it."""
    return napper()


@workflow
def waits_for_hook(token: str) -> object:
    """Waits (a day at most) on hook ``token``."""
    return durable.create_hook(token=token, timeout="1d").wait()


@workflow
def quick() -> int:
    """One step, at once."""
    return inc(0)


@workflow
def child_then_hook(token: str) -> object:
    """Runs ``quick`` as a child run, then waits on hook ``token``."""
    quick()
    return durable.create_hook(token=token).wait()
