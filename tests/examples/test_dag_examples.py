"""examples/dag_math.json and examples/dag_fanout.yaml in the testing world."""

from __future__ import annotations

from pathlib import Path

import pytest

import durable.dag
import examples.dag_handlers  # noqa: F401 - registers the handlers
from durable.testing import world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MATH = EXAMPLES / "dag_math.json"
FANOUT = EXAMPLES / "dag_fanout.yaml"


def test_math_example():
    with world():
        assert durable.dag.run(MATH) == pytest.approx(80 / 3)


def test_fanout_example():
    with world():
        result = durable.dag.run(FANOUT, "go")
    assert [b["task"] for b in result["received"]] == ["B1", "B2", "B3"]
