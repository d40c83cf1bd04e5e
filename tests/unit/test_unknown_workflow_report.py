"""A worker reports every run of a workflow it does not know, per workflow, once a minute.

After a deploy renamed a workflow its runs wait for a worker that has the old name registered;
the worker said so for one run of four, once, and never again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import durable._runtime as runtime_module
from durable import workflow
from durable._runtime import Runtime, RuntimeOptions
from durable.world import NewRun
from worlds.memory import MemoryWorld

INPUT = b'{"args":[],"kwargs":{}}'


@workflow(name="unknown_report.known")
def known() -> str:
    return "known"


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    world = MemoryWorld("memory://")
    running = Runtime(
        world,
        RuntimeOptions(worker=False, workflow_names=["unknown_report.known"]),
    )
    try:
        yield running
    finally:
        running.stop()
        world.close()


def _create(runtime: Runtime, run_id: str, name: str) -> None:
    runtime.world.create_run(NewRun(run_id, name, INPUT), owner=None, lease_ttl=5)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_each_unknown_workflow_gets_one_line_counting_its_runs(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "_UNKNOWN_CHECK", 0.0)
    for i in range(4):
        _create(runtime, f"renamed-{i}", "unknown_report.renamed")
    _create(runtime, "gone-0", "unknown_report.gone")
    _create(runtime, "known-0", "unknown_report.known")
    with caplog.at_level(logging.WARNING, logger="durable"):
        runtime._report_unknown()
        lines = _said(caplog)
        assert len(lines) == 2, lines
        renamed = next(line for line in lines if "'unknown_report.renamed'" in line)
        assert renamed.startswith(
            "4 runs of workflow 'unknown_report.renamed' wait for a worker that has it registered"
        ), renamed
        assert renamed.count("renamed-") == 3 and "and 1 more" in renamed, renamed
        assert "no workflow named 'unknown_report.renamed' is registered" in renamed
        gone = next(line for line in lines if "'unknown_report.gone'" in line)
        assert gone.startswith("1 run of workflow 'unknown_report.gone' waits for"), gone
        assert "gone-0" in gone
        assert not any("known-0" in line for line in lines)

        caplog.clear()
        runtime._report_unknown()  # within the minute: nothing again
        assert _said(caplog) == []

        monkeypatch.setattr(runtime_module, "_UNKNOWN_REPEAT", 0.0)
        _create(runtime, "renamed-4", "unknown_report.renamed")
        runtime._report_unknown()  # a minute later: said again, with the runs there now
        again = _said(caplog)
    assert len(again) == 2, again
    assert any(line.startswith("5 runs of workflow 'unknown_report.renamed'") for line in again)
