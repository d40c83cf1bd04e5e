"""Workflows the CLI tests start, run and inspect in subprocesses."""

from __future__ import annotations

import datetime
import time

import pydantic

import durable
from durable import FatalError, RetryPolicy, step, workflow

QUICK_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=False)


@step
def make_greeting(name: str) -> str:
    return f"hello {name}"


@step(retry=QUICK_RETRY)
def wobbly(label: str) -> str:
    if durable.step_info().attempt < 3:
        raise ConnectionError(f"{label}: try again")
    return f"{label} ok"


@step
def refuse(reason: str) -> None:
    raise FatalError(reason)


@workflow
def greet(name: str, punctuation: str = "!") -> dict[str, str]:
    """One step; the simplest run."""
    return {"greeting": make_greeting(name) + punctuation}


@workflow
def flaky(label: str) -> list[str]:
    """A step that fails twice before it succeeds, then a short sleep and parallel branches."""
    first = wobbly(label)
    durable.sleep(0.05)
    rest = durable.parallel(lambda: make_greeting("a"), lambda: make_greeting("b"))
    return [first, *rest]


@workflow
def doomed(reason: str) -> None:
    """Fails at once: a FatalError is never retried."""
    refuse(reason)


@workflow
def nap(duration: str) -> str:
    """Records a step, then sleeps (a long sleep suspends the run)."""
    make_greeting("sleeper")
    durable.sleep(duration)
    return "rested"


@workflow
def charge_then_nap(duration: str) -> str:
    """A saga whose undo fails, around a sleep: cancelled, it says the undo failed."""
    with durable.Saga() as saga:
        make_greeting("charged")
        saga.add(refuse, "refund api down")
        durable.sleep(duration)
    return "kept"


class Member(pydantic.BaseModel):
    name: str
    since: datetime.date


@workflow
def welcome(member: Member) -> str:
    """Annotated with a model: JSON given on the command line arrives as a Member."""
    assert isinstance(member, Member), type(member)
    return f"welcome {member.name}, member since {member.since.year}"


@workflow
def measure(text: str) -> int:
    """Returns the length of its input (which may be too large for a command line)."""
    return len(text)


@step
def explode(size: int) -> None:
    raise FatalError("x" * size)


@workflow
def blow_up(size: int) -> None:
    """Fails with an exception message of ``size`` characters."""
    explode(size)


@workflow
def approval(token: str) -> int:
    """Waits (a day at most) on hook ``token``; returns the length of the payload's text."""
    payload = durable.create_hook(token=token, timeout="1d").wait()
    return len(payload["text"])


@step
def dawdle(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def crawl(seconds: float) -> float:
    """One slow step (to interrupt while it runs)."""
    return dawdle(seconds)


@workflow
def family(name: str) -> dict[str, str]:
    """Runs ``greet`` as a child run and returns its result."""
    return greet(name)


@workflow
def greet_patched(name: str) -> str:
    if durable.patched("shout"):
        return make_greeting(name.upper())
    return make_greeting(name)
