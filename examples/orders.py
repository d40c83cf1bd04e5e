"""Place an order: charge the card, reserve stock and book shipping at once; undo on failure.

Run it (it uses the default world, ``sqlite:///.durable/durable.db``)::

    python examples/orders.py

It places two orders. The first goes through, although the warehouse API times out twice
(the step is retried). The second uses a card that is declined: a ``FatalError`` is never
retried, so the charge fails at once; once the other branches have finished (with their own
retries), the workflow compensates, releasing the stock and cancelling the shipment they
booked. Then look at what happened::

    durable runs --workflow place_order
    durable inspect <run id>

Or run the workflow from the command line, with a worker in another terminal::

    durable dev examples.orders
    durable start examples.orders:place_order '[{"id": "A-3", "card": "4242", "items": ["mug"]}]'
"""

from __future__ import annotations

import sys
from typing import Any, TypedDict

import durable
from durable import FatalError, RetryPolicy, step, workflow

DECLINED_CARD = "4000-0000-0000-0002"


class Order(TypedDict):
    """What the shop sends. A TypedDict is a plain dict, so it is recorded as plain JSON."""

    id: str
    card: str
    items: list[str]


class CardDeclined(FatalError):
    """The payment provider refused the card; retrying would not help."""


def say(line: str) -> None:
    # One write per line: the three branches run in parallel threads and print at once.
    sys.stdout.write(line + "\n")


@step
def charge_card(order: Order) -> str:
    if order["card"] == DECLINED_CARD:
        say(f"  [{order['id']}] card declined")
        raise CardDeclined(f"card ending {order['card'][-4:]} was declined")
    # The idempotency key is the same on every attempt: the provider charges at most once.
    key = durable.step_info().idempotency_key
    say(f"  [{order['id']}] charged the card (idempotency key {key})")
    return f"pay-{order['id']}"


@step(retry=RetryPolicy(max_attempts=5, initial_delay=0.2, backoff=2.0))
def reserve_stock(order: Order) -> str:
    attempt = durable.step_info().attempt
    if attempt < 3:  # a flaky warehouse API: the first two calls time out
        say(f"  [{order['id']}] warehouse timed out (attempt {attempt}); retrying")
        raise TimeoutError("warehouse API timed out")
    say(f"  [{order['id']}] reserved {', '.join(order['items'])} (attempt {attempt})")
    return f"res-{order['id']}"


@step
def book_shipping(order: Order) -> str:
    say(f"  [{order['id']}] booked shipping")
    return f"ship-{order['id']}"


@step
def refund(payment: str) -> None:
    say(f"  refunded {payment}")


@step
def release_stock(reservation: str) -> None:
    say(f"  released {reservation}")


@step
def cancel_shipping(shipment: str) -> None:
    say(f"  cancelled {shipment}")


def _attempt(action: durable.Step[[Order], str], order: Order) -> tuple[str | None, str | None]:
    """Run one branch; a step that fails for good gives its error instead of raising it."""
    try:
        return action(order), None
    except Exception as exc:  # the step's last error, re-raised here by the engine
        return None, f"{action.name}: {exc}"


@workflow
def place_order(order: Order) -> dict[str, Any]:
    """Charge, reserve and ship in parallel; if any of them fails, undo the others."""
    (payment, e1), (reservation, e2), (shipment, e3) = durable.parallel(
        lambda: _attempt(charge_card, order),
        lambda: _attempt(reserve_stock, order),
        lambda: _attempt(book_shipping, order),
    )
    errors = [e for e in (e1, e2, e3) if e is not None]
    if errors:
        # Compensation: each undo is a step too, so it happens exactly once even after a crash.
        if payment is not None:
            refund(payment)
        if reservation is not None:
            release_stock(reservation)
        if shipment is not None:
            cancel_shipping(shipment)
        return {"order": order["id"], "status": "cancelled", "reason": "; ".join(errors)}
    return {
        "order": order["id"],
        "status": "confirmed",
        "payment": payment,
        "reservation": reservation,
        "shipment": shipment,
    }


if __name__ == "__main__":
    orders: list[Order] = [
        {"id": "A-1", "card": "4242-4242-4242-4242", "items": ["mug", "tea"]},
        {"id": "A-2", "card": DECLINED_CARD, "items": ["kettle"]},
    ]
    for order in orders:
        say(f"placing order {order['id']}")
        run = place_order.start(order)
        outcome = run.result(timeout=60)
        say(f"order {order['id']} {outcome['status']}: {outcome}  (run {run.id})")
    say("see the runs: durable runs --workflow place_order; durable inspect <run id>")
