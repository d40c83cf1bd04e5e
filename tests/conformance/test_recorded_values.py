"""A workflow sees a step's outcome as recorded, live as on replay: what works before a crash or
suspension works after it. Every world, live and under forced replay."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from typing import Any

import pytest

from durable import StepFailed, step, workflow

SHARED: list[str] = ["original"]


@step(name="recorded.counts")
def counts() -> defaultdict[str, int]:
    return defaultdict(int, {"a": 1})


@step(name="recorded.ordered")
def ordered() -> OrderedDict[str, int]:
    return OrderedDict(b=2, a=1)


@step(name="recorded.shared")
def shared() -> list[str]:
    return SHARED


@step(name="recorded.nap")
def nap() -> None:
    return None


@workflow
def reads_what_was_recorded() -> dict[str, Any]:
    got = counts()
    try:
        got["b"] += 1  # a defaultdict would make this 1; the recorded dict has no "b"
        missing_key = "no error"
    except KeyError:
        missing_key = "KeyError"
    listed = shared()
    listed.append("changed by the workflow")
    nap()  # a durable point: forced replay resumes from the log here
    return {
        "type": type(got).__name__,
        "missing_key": missing_key,
        "ordered": type(ordered()).__name__,
        "shared_untouched": SHARED == ["original"],
    }


class Declined(Exception):
    """An error carrying an attribute that cannot be recorded (like requests' response)."""

    def __init__(self, message: str, response: object = None) -> None:
        super().__init__(message)
        self.response = response


@step(name="recorded.decline")
def decline() -> None:
    raise Declined("declined", response=threading.Lock())


@workflow
def catches_what_was_recorded() -> list[str]:
    seen = []
    try:
        decline()
    except Declined as exc:  # noqa: PERF203 - one step per try, as workflows write them
        seen.append(f"Declined, response {exc.response!r}")
    except StepFailed as exc:
        seen.append(f"StepFailed {exc.error_type}")
    nap()
    return seen


@pytest.fixture(autouse=True)
def _restore_shared():
    SHARED[:] = ["original"]


def test_a_workflow_gets_a_steps_result_as_recorded(engine):
    assert reads_what_was_recorded() == {
        "type": "dict",
        "missing_key": "KeyError",
        "ordered": "dict",
        "shared_untouched": True,
    }


def test_a_workflow_catches_a_steps_error_as_recorded(engine):
    assert catches_what_was_recorded() == ["Declined, response None"]
