"""A step whose return annotation changed from dict to a class replays older dict results as it."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

import durable
from durable.testing import world


@dataclasses.dataclass
class Quote:
    price: int
    currency: str


class Shipping(BaseModel):
    days: int


@durable.step(name="rrt_quote")
def quote_v1(sku: str) -> dict[str, object]:
    return {"price": 5, "currency": "EUR"}


@durable.step(name="rrt_shipping")
def shipping_v1(sku: str) -> dict[str, object]:
    return {"days": 3}


@durable.step(name="rrt_odd")
def odd_v1(sku: str) -> dict[str, object]:
    return {"unexpected": True}


@durable.workflow(name="rrt_flow")
def flow_v1(sku: str) -> object:
    return [quote_v1(sku), shipping_v1(sku), odd_v1(sku)]


@durable.step(name="rrt_quote")
def quote_v2(sku: str) -> Quote:
    return Quote(5, "EUR")


@durable.step(name="rrt_shipping")
async def shipping_v2(sku: str) -> Shipping:
    return Shipping(days=3)


@durable.step(name="rrt_odd")
def odd_v2(sku: str) -> Quote:
    return Quote(1, "EUR")


@durable.step(name="rrt_shipping")
def shipping_v2_sync(sku: str) -> Shipping:
    return Shipping(days=3)


def flow_v2(sku: str) -> object:
    return [quote_v2(sku), shipping_v2_sync(sku), odd_v2(sku)]


async def flow_v2_async(sku: str) -> object:
    return [await quote_v2.run_async(sku), await shipping_v2(sku), await odd_v2.run_async(sku)]


def recorded_by_v1() -> list[durable.Event]:
    with world():
        run = flow_v1.start("sku-1")
        run.result(timeout=10)
        return run.events()


def test_dict_results_recorded_by_older_code_take_the_new_annotation() -> None:
    replayed = durable.replay(flow_v2, ("sku-1",), {}, recorded_by_v1())
    assert replayed.status == "completed", replayed.error
    quote, shipping, odd = replayed.result  # type: ignore[misc]
    assert quote == Quote(5, "EUR") and shipping == Shipping(days=3)
    assert odd == {"unexpected": True}  # does not fit Quote: as recorded


def test_in_async_workflows_too() -> None:
    replayed = durable.replay(flow_v2_async, ("sku-1",), {}, recorded_by_v1())
    assert replayed.status == "completed", replayed.error
    quote, shipping, _ = replayed.result  # type: ignore[misc]
    assert quote == Quote(5, "EUR") and shipping == Shipping(days=3)
