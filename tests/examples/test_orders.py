"""examples/orders.py: parallel branches, retries, and compensation after a FatalError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from durable.testing import world
from examples.orders import DECLINED_CARD, place_order

ROOT = Path(__file__).resolve().parents[2]


def _steps(events):
    return [(e.kind, e.op_id, e.name) for e in events if e.op_id is not None]


def test_order_is_confirmed_after_the_warehouse_retries():
    order = {"id": "T-1", "card": "4242-4242-4242-4242", "items": ["mug", "tea"]}
    with world():
        run = place_order.start(order)
        result = run.result(timeout=10)
        steps = _steps(run.events())
    assert result == {
        "order": "T-1",
        "status": "confirmed",
        "payment": "pay-T-1",
        "reservation": "res-T-1",
        "shipment": "ship-T-1",
    }
    # Three branches of the parallel group at position 1; the warehouse failed twice first.
    assert sorted(steps) == sorted(
        [
            ("step_completed", "1.0.1", "charge_card"),
            ("step_retrying", "1.1.1", "reserve_stock"),
            ("step_retrying", "1.1.1", "reserve_stock"),
            ("step_completed", "1.1.1", "reserve_stock"),
            ("step_completed", "1.2.1", "book_shipping"),
        ]
    )


def test_declined_card_is_not_retried_and_the_other_branches_are_undone():
    order = {"id": "T-2", "card": DECLINED_CARD, "items": ["kettle"]}
    with world():
        run = place_order.start(order)
        result = run.result(timeout=10)
        events = run.events()
    assert result == {
        "order": "T-2",
        "status": "cancelled",
        "reason": "charge_card: card ending 0002 was declined",
    }
    steps = _steps(events)
    failed = [e for e in events if e.kind == "step_failed"]
    assert [e.name for e in failed] == ["charge_card"]
    assert json.loads(failed[0].data)["attempts"] == 1  # a FatalError is never retried
    assert json.loads(failed[0].data)["type"] == "examples.orders.CardDeclined"
    # Compensation runs after the group, in order: no refund (nothing was charged).
    assert steps[-2:] == [
        ("step_completed", "2", "release_stock"),
        ("step_completed", "3", "cancel_shipping"),
    ]
    assert "refund" not in {name for _, _, name in steps}


def test_the_script_runs_on_the_default_world(tmp_path):
    env = dict(os.environ)
    env.pop("DURABLE_WORLD", None)
    env.pop("DURABLE_FORCE_REPLAY", None)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "orders.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "order A-1 confirmed" in out
    assert "warehouse timed out (attempt 2); retrying" in out
    assert "order A-2 cancelled" in out and "released res-A-2" in out
    assert (tmp_path / ".durable" / "durable.db").exists()
