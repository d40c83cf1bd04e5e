"""A DAG spec's retry delays (``defaults.retry``, a node's ``retry``) take duration strings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import durable.dag as dag
from durable import RetryPolicy
from durable.dag._spec import RetrySpec, load_file

SPEC = """\
name: durations
defaults:
  retry: {max_attempts: 2, initial_delay: 5s, max_delay: 5m, jitter: false}
nodes:
  - id: flaky
    handler: retry_durations.flaky
  - id: capped
    handler: retry_durations.flaky
    retry: {max_attempts: 2, initial_delay: 1h, max_delay: 90s, jitter: false}
"""

attempts: dict[str, int] = {}


@dag.handler("retry_durations.flaky")
def flaky() -> str:
    from durable import step_info

    op = step_info().step_id
    attempts[op] = attempts.get(op, 0) + 1
    if attempts[op] == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "durations.yaml"
    path.write_text(SPEC)
    return path


def test_duration_strings_validate_to_seconds(spec_file):
    spec = dag.DagSpec.model_validate(load_file(spec_file))
    assert spec.defaults.retry is not None
    assert spec.defaults.retry.initial_delay == 5.0 and spec.defaults.retry.max_delay == 300.0
    assert spec.defaults.retry.policy() == RetryPolicy(2, 5.0, 2.0, 300.0, False)
    assert spec.nodes[1].retry is not None
    assert spec.nodes[1].retry.policy() == RetryPolicy(2, 3600.0, 2.0, 90.0, False)
    dag.validate(load_file(spec_file))
    built = RetrySpec(initial_delay=timedelta(seconds=5), max_delay="5 minutes")
    assert (built.initial_delay, built.max_delay) == (5.0, 300.0)


def test_a_bad_duration_is_a_validation_problem_naming_the_field():
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate({
            "defaults": {"retry": {"initial_delay": "5 fortnights"}},
            "nodes": [{"id": "a", "handler": "retry_durations.flaky",
                       "retry": {"max_delay": "soon"}}],
        })
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith('defaults.retry.initial_delay: invalid duration "5 fortnights"')
    assert problems[1].startswith("node 'a': retry.max_delay: invalid duration \"soon\"")


def test_a_run_waits_the_delays_the_strings_give(engine, spec_file):
    attempts.clear()
    run = dag.start(spec_file)
    assert run.result(timeout=20) == {"capped": "ok", "flaky": "ok"}
    waits = sorted(
        round(e.value()["retry_at"] - e.created_at)
        for e in run.events() if e.kind == "step_retrying"
    )
    assert waits == [5, 90]  # 5s from defaults; the node's 1h capped by its max_delay of 90s


def test_the_published_schema_takes_duration_strings(spec_file):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(Path(dag.__file__).with_name("schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(load_file(spec_file), schema)
    retry = schema["$defs"]["RetrySpec"]["properties"]
    for field in ("initial_delay", "max_delay"):
        assert {"type": "string"} in retry[field]["anyOf"]
    bad = {"nodes": [{"id": "a", "handler": "x", "retry": {"initial_delay": -1}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
