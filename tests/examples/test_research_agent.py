"""examples/research_agent.py: a planner step, a child DAG run of sub-agent tasks, a report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import durable.dag
from durable.testing import world
from examples.research_agent import (
    RuleBasedPlanner,
    Task,
    build_spec,
    research,
    research_task,
    use_planner,
)

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do durable workflows recover from crashes and what do they cost?"


def test_rule_based_plan_is_a_valid_dag():
    tasks = RuleBasedPlanner().plan(QUESTION)
    assert [t["id"] for t in tasks] == ["background", "aspect_1", "aspect_2", "synthesis"]
    assert tasks[-1]["dependencies"] == ["aspect_1", "aspect_2"]
    spec = durable.dag.validate(build_spec([dict(t) for t in tasks]))
    assert durable.dag.waves(spec) == [
        ["background"], ["aspect_1", "aspect_2"], ["synthesis"]
    ]


def test_research_runs_the_plan_as_a_child_dag():
    with world() as env:
        run = research.start(QUESTION)
        result = run.result(timeout=30)
        children = env.world.list_runs(workflow_name="durable.dag")
    assert result["tasks"] == ["background", "aspect_1", "aspect_2", "synthesis"]
    assert result["report"].startswith(f"Research report: {QUESTION}\n- [background] ")
    assert "builds on 2 earlier finding(s)" in result["report"].splitlines()[-1]
    expected = research_task("How do durable workflows recover from crashes?",
                             [research_task("What is the background of: How do durable "
                                            "workflows recover from crashes?")])
    assert f"[aspect_1] {expected['summary']}" in result["report"]
    assert [c.status for c in children] == ["completed"]  # the plan ran as one child run


class _LlmLikePlanner:
    def plan(self, question: str) -> list[Task]:
        return [
            {"id": "a", "question": f"first part of {question}", "dependencies": []},
            {"id": "b", "question": "second part", "dependencies": []},
            {"id": "c", "question": "together", "dependencies": ["a", "b"]},
        ]


def test_a_custom_planner_decides_the_tasks():
    previous = use_planner(_LlmLikePlanner())
    try:
        with world():
            result = research("anything")
    finally:
        use_planner(previous)
    assert result["tasks"] == ["a", "b", "c"]


def test_script_runs_on_the_default_world(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DURABLE_WORLD", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "research_agent.py"), "Why is the sky blue"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Research report: Why is the sky blue" in proc.stdout
    assert (tmp_path / ".durable" / "durable.db").exists()


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_still_plans(question: str):
    tasks = RuleBasedPlanner().plan(question)
    durable.dag.validate(build_spec([dict(t) for t in tasks]))
