"""A DAG spec's input schema: the keywords it supports are checked, any other is refused, and
properties the input leaves out get their defaults."""

from __future__ import annotations

import pytest

import durable.dag as dag
from durable.dag import DagValidationError, validate
from durable.dag._schema import check_input, with_defaults
from durable.testing import world

SIGNUP = {
    "type": "object",
    "title": "Sign-up",
    "required": ["username", "email", "password"],
    "additionalProperties": False,
    "properties": {
        "username": {"type": "string", "minLength": 3, "maxLength": 20,
                     "pattern": "^[a-z][a-z0-9_]*$"},
        "email": {"type": "string", "format": "email"},
        "password": {"type": "string", "minLength": 8},
        "plan": {"enum": ["free", "pro"]},
        "age": {"type": "integer", "minimum": 13, "maximum": 130},
        "born": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
}


def test_a_good_input_passes() -> None:
    good = {"username": "ada_l", "email": "ada@example.com", "password": "correct horse",
            "plan": "pro", "age": 36, "born": "1815-12-10", "tags": ["math"]}
    assert check_input(SIGNUP, good) == []


def test_every_broken_constraint_is_reported() -> None:
    bad = {"username": "Jo", "email": "not-an-email", "password": "x", "plan": "gold",
           "age": 7, "born": "10/12/1815", "tags": ["a", "b", "c"], "extra": 1}
    assert check_input(SIGNUP, bad) == [
        "input.username: must have at least 3 characters, has 2",
        "input.username: does not match the pattern '^[a-z][a-z0-9_]*$'",
        "input.email: not a valid email: 'not-an-email'",
        "input.password: must have at least 8 characters, has 1",
        "input.plan: must be one of ['free', 'pro'], got 'gold'",
        "input.age: must be at least 13, got 7",
        "input.born: not a valid date: '10/12/1815'",
        "input.tags: must have at most 2 items, has 3",
        "input: unexpected property 'extra'",
    ]


def test_keywords_it_cannot_check_are_refused_when_the_spec_is_validated() -> None:
    spec = {
        "input": {"type": "object", "properties": {
            "name": {"type": "string", "minLenght": 3},
            "code": {"type": "string", "format": "credit-card"},
            "n": {"type": "integer", "multipleOf": 2, "minimum": "one"},
        }},
        "nodes": [{"id": "a", "handler": "output", "config": {"value": 1}}],
    }
    with pytest.raises(DagValidationError) as caught:
        validate(spec)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "input.properties.name: keyword 'minLenght' is not supported" in text
    assert "input.properties.code.format: unknown format 'credit-card'" in text
    assert "input.properties.n: keyword 'multipleOf' is not supported" in text
    assert "input.properties.n.minimum: must be a number, got 'one'" in text


PROFILE = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {"type": "string"},
        "profile": {"type": "object", "default": {},
                    "properties": {"name": {"type": "string", "default": "anonymous"}}},
        "tags": {"type": "array", "items": {
            "type": "object", "properties": {"weight": {"type": "number", "default": 1}}}},
    },
}


def test_defaults_fill_in_what_the_input_leaves_out_at_any_depth() -> None:
    given = {"user": "ada", "tags": [{"weight": 3}, {}]}
    assert with_defaults(PROFILE, given) == {
        "user": "ada",
        "profile": {"name": "anonymous"},
        "tags": [{"weight": 3}, {"weight": 1}],
    }
    assert given == {"user": "ada", "tags": [{"weight": 3}, {}]}  # a copy is filled in
    filled = with_defaults(PROFILE, {"user": "ada"})
    filled["profile"]["name"] = "changed"
    assert PROFILE["properties"]["profile"]["default"] == {}
    assert with_defaults(PROFILE, {"user": "ada", "profile": {"name": "Ada"}})["profile"] == {
        "name": "Ada"
    }
    assert with_defaults(None, {"x": 1}) == {"x": 1}
    assert with_defaults(PROFILE, "not an object") == "not an object"


def test_a_run_reads_the_defaults_and_records_them() -> None:
    spec = {"input": PROFILE, "nodes": [
        {"id": "a", "handler": "output", "config": {"value": "{{ input.profile.name }}"}},
    ]}
    with world():
        run = dag.start(spec, {"user": "ada"})
        assert run.result(timeout=10) == {"a": "anonymous"}
        assert dag.run(spec, {"user": "ada", "profile": {"name": "Ada"}}) == {"a": "Ada"}
        # The workflow fills them in too (a run started with the spec and input as they are).
        assert dag.dag_workflow(dag.validate(spec).to_json(), {"user": "ada"}) == {
            "a": "anonymous"
        }


def test_no_input_is_an_empty_object_when_the_schema_wants_an_object() -> None:
    spec = {
        "input": {"type": "object", "properties": {"a": {"type": "number", "default": 1}}},
        "nodes": [{"id": "n", "handler": "output", "config": {"value": "{{ input.a }}"}}],
    }
    with world():
        assert dag.run(spec) == {"n": 1}
        with pytest.raises(DagValidationError, match="expected object") as caught:
            dag.start(spec, "not an object")
        assert str(caught.value).startswith("invalid run input (1 problem(s)):")


def test_a_recorded_spec_with_an_optional_input_read_still_runs() -> None:
    """A run started before such reads were refused goes on (replays) as it did."""
    schema = {"type": "object", "properties": {"p": {"type": "string"}}}
    spec = {"input": schema, "nodes": [
        {"id": "a", "handler": "output", "config": {"value": "{{ input.p }}"}},
    ]}
    with pytest.raises(DagValidationError, match="reads input.p"):
        dag.start(spec, {"p": "x"})
    with world():
        assert dag.dag_workflow(spec, {"p": "x"}) == {"a": "x"}
