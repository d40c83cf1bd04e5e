"""A workflow called with arguments that cannot bind is refused before anything is recorded."""

from __future__ import annotations

import pytest

import durable
from durable.testing import TestWorld


@durable.workflow(name="arity.order")
def order(sku: str, quantity: int = 1) -> str:
    return f"{quantity} x {sku}"


@pytest.mark.parametrize("args", [(), ("a", 2, 3)])
def test_too_few_or_too_many_positional_arguments(durable_world: TestWorld, args: tuple) -> None:
    with pytest.raises(TypeError, match=r"workflow 'arity.order' called with arguments"):
        order(*args)
    with pytest.raises(TypeError, match=r"do not match order\(sku: "):
        order.start(*args)
    assert durable_world.world.count_runs() == {}


def test_arguments_that_bind_run(durable_world: TestWorld) -> None:
    assert order("a") == "1 x a"
    assert order("a", 2) == "2 x a"
    assert order(sku="a", quantity=3) == "3 x a"
