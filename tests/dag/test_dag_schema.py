"""durable/dag/schema.json is the published JSON Schema of DAG specs and stays in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import durable.dag
from cli._dag import dag
from durable.dag._spec import spec_schema

SCHEMA = Path(durable.dag.__file__).with_name("schema.json")


def _generated() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"


def test_committed_schema_matches_the_model():
    assert SCHEMA.read_text(encoding="utf-8") == _generated(), (
        "durable/dag/schema.json is stale: regenerate it with `durable dag schema > "
        "durable/dag/schema.json`"
    )


def test_schema_describes_nodes():
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert doc["title"] == "DagSpec"
    assert doc["$defs"]["DagSpec"]["required"] == ["nodes"]
    node = doc["$defs"]["NodeSpec"]
    assert {"id", "handler", "dependencies", "config", "retry", "when", "on_failure", "timeout",
            "foreach", "max_concurrency", "compensate"} <= set(node["properties"])
    on_failure = node["properties"]["on_failure"]["anyOf"][0]
    assert on_failure["enum"] == ["fail", "continue", "compensate"]
    assert doc["$defs"]["CompensateSpec"]["required"] == ["handler"]
    assert "item" in node["properties"]["foreach"]["description"]


def test_cli_prints_the_schema():
    result = CliRunner().invoke(dag, ["schema"])
    assert result.exit_code == 0, result.output
    assert result.output == _generated()


def test_the_schema_takes_the_flat_and_the_nested_form():
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    graph = {"nodes": [{"id": "a", "handler": "task"}]}
    jsonschema.validate({"name": "flat", "version": 2, "tags": ["x"], **graph}, doc)
    jsonschema.validate({"name": "nested", "description": "d", "dag": graph}, doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "neither"}, doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dag": graph, "nodez": []}, doc)
