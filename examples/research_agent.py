"""A research agent that plans at run time: the planner decides the tasks, the DAG layer runs them.

The ``research`` workflow

1. asks a :class:`Planner` (a step, so the plan is recorded once and replayed, never re-asked)
   to turn the question into sub-agent tasks, each with an ``id``, a sub-``question`` and
   ``dependencies`` on other tasks;
2. builds a DAG spec from the plan: one ``research`` node per task, receiving its dependencies'
   findings as ``context`` through templates;
3. runs the spec as a child run of the DAG workflow (``durable.dag.dag_workflow``), so
   independent tasks run in parallel, each task's node is a durable step, and a crash resumes
   without redoing finished tasks;
4. combines the findings into a report (another step).

The default planner is offline and rule-based (:class:`RuleBasedPlanner`); a real LLM client
implements the :class:`Planner` protocol (``plan(question) -> list of tasks``) and is installed
with :func:`use_planner` in the process that executes runs. Likewise the ``research`` handler
writes a deterministic summary; a real sub-agent would call a model or a search API there.

Run it on the default world (``sqlite:///.durable/durable.db``)::

    python examples/research_agent.py "How do durable workflows recover from crashes and
        what do they cost?"
"""

from __future__ import annotations

import re
import sys
from typing import Any, Protocol, TypedDict

import durable
import durable.dag
from durable import step, workflow

__all__ = [
    "Planner",
    "RuleBasedPlanner",
    "Task",
    "build_spec",
    "main",
    "research",
    "research_task",
    "use_planner",
]


class Task(TypedDict):
    """One sub-agent task of a plan."""

    id: str
    """Unique within the plan; letters, digits, ``_`` and ``-``."""
    question: str
    dependencies: list[str]
    """Ids of tasks whose findings this task needs (they run first)."""


class Planner(Protocol):
    """Turns a question into sub-agent tasks. An LLM client implements this by prompting for a
    JSON list of ``{"id", "question", "dependencies"}`` and parsing the reply."""

    def plan(self, question: str) -> list[Task]: ...


class RuleBasedPlanner:
    """An offline planner: a ``background`` task, one task per clause of the question (split on
    ``and``, ``;``, ``,`` and ``?``), each depending on the background, and a ``synthesis`` task
    depending on all of them."""

    def plan(self, question: str) -> list[Task]:
        text = " ".join(question.split())
        clauses = [c.strip() for c in re.split(r"\?|;|,|\band\b", text) if c.strip()]
        topic = clauses[0] if clauses else (text or "the question")
        tasks: list[Task] = [
            {"id": "background", "question": f"What is the background of: {topic}?",
             "dependencies": []}
        ]
        for index, clause in enumerate(clauses or [topic], start=1):
            tasks.append(
                {"id": f"aspect_{index}", "question": f"{clause}?", "dependencies": ["background"]}
            )
        aspects = [t["id"] for t in tasks[1:]]
        tasks.append(
            {"id": "synthesis", "question": f"How do the findings answer: {text}",
             "dependencies": aspects}
        )
        return tasks


_planner: Planner = RuleBasedPlanner()


def use_planner(planner: Planner) -> Planner:
    """Install the planner the ``plan`` step uses in this process; returns the previous one."""
    global _planner
    previous, _planner = _planner, planner
    return previous


@durable.dag.handler("research")
def research_task(question: str, context: list[Any] | None = None) -> dict[str, Any]:
    """A sub-agent: a deterministic summary of ``question`` using its dependencies' findings."""
    words = re.findall(r"[A-Za-z][A-Za-z-]{3,}", question.lower())
    keywords = sorted(set(words) - {"what", "does", "with", "from", "that", "this", "findings",
                                    "answer", "background"})[:5]
    used = [c["question"] for c in (context or []) if isinstance(c, dict)]
    summary = f"Findings on {question!r}: key terms {', '.join(keywords) or 'none'}"
    if used:
        summary += f"; builds on {len(used)} earlier finding(s)"
    return {"question": question, "keywords": keywords, "summary": summary, "sources": used}


@step
def plan(question: str) -> list[dict[str, Any]]:
    """Ask the planner for tasks (a step: recorded once, replayed after a crash)."""
    tasks = _planner.plan(question)
    return [
        {"id": str(t["id"]), "question": str(t["question"]),
         "dependencies": [str(d) for d in t.get("dependencies", [])]}
        for t in tasks
    ]


def build_spec(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The DAG spec of a plan: a ``research`` node per task, its dependencies' outputs as
    ``context``; the output maps each task id to its finding."""
    return {
        "name": "research",
        "defaults": {"retry": {"max_attempts": 3, "initial_delay": 0.5}},
        "nodes": [
            {
                "id": t["id"],
                "handler": "research",
                "dependencies": t["dependencies"],
                "config": {
                    "question": t["question"],
                    "context": [f"{{{{ {d}.output }}}}" for d in t["dependencies"]],
                },
            }
            for t in tasks
        ],
        "output": {t["id"]: f"{{{{ {t['id']}.output }}}}" for t in tasks},
    }


@step
def combine(question: str, tasks: list[dict[str, Any]], findings: dict[str, Any]) -> dict[str, Any]:
    """The report: every task's summary in plan order."""
    lines = [f"- [{t['id']}] {findings[t['id']]['summary']}" for t in tasks]
    return {
        "question": question,
        "tasks": [t["id"] for t in tasks],
        "report": f"Research report: {question}\n" + "\n".join(lines),
    }


@workflow
def research(question: str) -> dict[str, Any]:
    """Plan, run the plan as a child DAG run (tasks in parallel where possible), combine."""
    tasks = plan(question)
    spec = build_spec(tasks)
    # Validate here, so a bad plan fails with every problem listed (nothing has run yet).
    durable.dag.validate(spec)
    findings = durable.dag.dag_workflow(spec)  # a child run of the DAG workflow
    return combine(question, tasks, findings)


def main(argv: list[str]) -> int:
    question = " ".join(argv) or (
        "How do durable workflows recover from crashes and what do they cost?"
    )
    run = research.start(question)
    sys.stdout.write(f"run {run.id}\n")
    sys.stdout.write(run.result()["report"] + "\n")
    sys.stdout.write(f"see it: durable inspect {run.id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
