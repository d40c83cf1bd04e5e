"""What the typed signatures of map, sleep, method steps and RunStatus promise holds at run time."""

from __future__ import annotations

import asyncio
from typing import get_args

import pytest

import durable
from durable import step, workflow
from durable.testing import world
from durable.world import RUN_STATUSES


@step
def typed_api_double(x: int) -> int:
    return x * 2


def test_map_refuses_a_non_callable_saying_what_to_pass():
    with pytest.raises(TypeError) as caught:
        durable.map(3, [1])  # type: ignore[call-overload]
    message = str(caught.value)
    assert "durable.map() takes a function" in message
    assert "of type 'int'" in message
    assert "durable.map(my_step, items)" in message
    assert "swapped" not in message


def test_map_notices_swapped_arguments():
    with pytest.raises(TypeError, match="arguments look swapped"):
        durable.map([1, 2], typed_api_double)  # type: ignore[call-overload]


def test_map_refuses_items_that_are_not_iterable():
    with pytest.raises(TypeError, match=r"items as an iterable .* of type 'int'"):
        durable.map(typed_api_double, 3)  # type: ignore[call-overload]


def test_map_checks_its_arguments_inside_a_workflow_before_running_anything():
    @workflow(name="typed-api-map-mistake")
    def mistaken() -> str:
        try:
            durable.map(typed_api_double(2), [1])  # type: ignore[call-overload]
        except TypeError as exc:
            return str(exc)
        return "no error"

    with world():
        assert "of type 'int'" in mistaken()


def test_sleep_in_sync_code_returns_none_as_it_always_has():
    assert durable.sleep(0) is None
    assert durable.sleep_until(0) is None


def test_a_sleep_in_a_sync_workflow_gives_none_to_a_parallel_branch():
    @workflow(name="typed-api-sync-sleep")
    def napping() -> list[object]:
        first = durable.sleep("2h")
        results = durable.parallel(lambda: durable.sleep(1), lambda: typed_api_double(2))
        return [first, *results]

    with world():
        assert napping() == [None, None, 4]


def test_sleep_in_an_async_workflow_is_awaited():
    @workflow(name="typed-api-async-sleep")
    async def napping() -> str:
        pending = durable.sleep("2h")
        kind = type(pending).__name__
        await pending
        return kind

    with world():
        assert asyncio.run(napping()) == "coroutine"


class TypedApiBilling:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    @step
    def charge(self, cents: int) -> int:
        return cents * self.rate


def test_a_step_read_from_an_instance_takes_it_as_its_first_argument():
    billing = TypedApiBilling(2)

    @workflow(name="typed-api-method-step")
    def bill(cents: int) -> int:
        return billing.charge(cents)

    with world():
        run = bill.start(21)
        assert run.result(timeout=5) == 42
        assert [e.value() for e in run.events() if e.kind == "step_completed"] == [42]
    assert TypedApiBilling.charge.name.endswith("TypedApiBilling.charge")
    assert TypedApiBilling.charge(billing, 5) == 10


def test_run_status_is_exported_as_the_literal_of_statuses():
    assert get_args(durable.RunStatus) == RUN_STATUSES
