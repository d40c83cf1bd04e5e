"""DAG specs: validation (every problem at once, with node ids) and templates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import durable.dag as dag
import examples.dag_handlers  # noqa: F401 - registers add/subtract/multiply/divide/task
from durable.dag._templates import TemplateError, render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MATH = EXAMPLES / "dag_math.json"
FANOUT = EXAMPLES / "dag_fanout.yaml"


@dag.handler("free")
def free(**config: object) -> dict[str, object]:
    return config


def node(id, handler="free", deps=(), **extra):
    return {"id": id, "handler": handler, "dependencies": list(deps), **extra}


GOOD = [node("a", config={"a": 1, "b": 2}), node("b", deps=["a"])]

MALFORMED = [
    ("not an object", [1, 2], ["a spec is an object, got list"]),
    ("no nodes key", {"output": 1}, ["'nodes' must be a list of nodes"]),
    ("nodes not a list", {"nodes": {"a": 1}}, ["'nodes' must be a list of nodes"]),
    ("empty nodes", {"nodes": []}, ["'nodes' is empty: a DAG needs at least one node"]),
    ("node not an object", {"nodes": ["a"]}, ["node '#0': a node is an object, got str"]),
    ("missing handler", {"nodes": [{"id": "a"}]}, ["node 'a': handler: Field required"]),
    ("missing id", {"nodes": [{"handler": "add"}]}, ["node '#0': id: Field required"]),
    ("bad id", {"nodes": [node("1a")]}, ["node '1a': invalid id"]),
    ("duplicate ids", {"nodes": [node("a"), node("a")]}, ["node 'a': duplicate id"]),
    ("unknown dependency", {"nodes": [node("a", deps=["zz"])]},
     ["node 'a': unknown dependency 'zz'"]),
    ("self dependency", {"nodes": [node("a", deps=["a"])]}, ["node 'a': depends on itself"]),
    ("dependency twice", {"nodes": [node("a"), node("b", deps=["a", "a"])]},
     ["node 'b': dependency 'a' is listed twice"]),
    ("two-node cycle", {"nodes": [node("a", deps=["b"]), node("b", deps=["a"])]},
     ["node 'a': cycle: a -> b -> a"]),
    ("three-node cycle", {"nodes": [node("x"), node("a", deps=["c", "x"]), node("b", deps=["a"]),
                                    node("c", deps=["b"])]},
     ["node 'a': cycle: a -> b -> c -> a"]),
    ("unknown handler", {"nodes": [node("a", handler="nope")]},
     ["node 'a': unknown handler 'nope'"]),
    ("template names non-ancestor",
     {"nodes": [node("a"), node("b"), node("c", deps=["a"], config={"x": "{{ b.output }}"})]},
     ["node 'c': config: '{{ b.output }}' references 'b', which is not an ancestor"]),
    ("template names unknown node", {"nodes": [node("a", config={"x": "{{ zz.output }}"})]},
     ["node 'a': config: '{{ zz.output }}' names unknown node 'zz'"]),
    ("template without .output", {"nodes": [node("a"), node("b", deps=["a"],
                                                              config={"x": "{{ a }}"})]},
     ["node 'b': config: '{{ a }}': write 'a.output' to use node 'a'"]),
    ("template references itself", {"nodes": [node("a", config={"x": "{{ a.output }}"})]},
     ["node 'a': config: '{{ a.output }}' references the node itself"]),
    ("unparsable template path", {"nodes": [node("a", config={"x": "{{ input.a..b }}"})]},
     ["node 'a': config: '{{ input.a..b }}': cannot parse '..b'"]),
    ("every bad template in a config",
     {"nodes": [node("a", config={"x": "{{ zz.output }}", "y": ["{{ input.a..b }}"],
                                  "z": "{{ a.output }}"})]},
     ["node 'a': config: '{{ input.a..b }}': cannot parse '..b'",
      "node 'a': config: '{{ a.output }}' references the node itself",
      "node 'a': config: '{{ zz.output }}' names unknown node 'zz'"]),
    ("when non-ancestor", {"nodes": [node("a"), node("b", when="{{ a.output }}")]},
     ["node 'b': when: '{{ a.output }}' references 'a', which is not an ancestor"]),
    ("when not a template", {"nodes": [node("a", when="yes")]},
     ["node 'a': when: must be a template"]),
    ("bad on_failure", {"nodes": [node("a", on_failure="explode")]},
     ["node 'a': on_failure: Input should be 'fail', 'continue' or 'compensate'"]),
    ("bad retry", {"nodes": [node("a", retry={"max_attempts": 0})]},
     ["node 'a': retry.max_attempts: Input should be greater than or equal to 1"]),
    ("unknown node field", {"nodes": [node("a", colour="red")]},
     ["node 'a': unknown field 'colour'"]),
    # foreach / max_concurrency
    ("foreach not a template", {"nodes": [node("a", foreach="input.items")]},
     ["node 'a': foreach: must be a template such as '{{ input.items }}' (resolving to a list) "
      "or a list"]),
    ("foreach wrong type", {"nodes": [node("a", foreach=5)]},
     ["node 'a': foreach: must be a template such as '{{ input.items }}' (resolving to a list) "
      "or a list, got int"]),
    ("foreach non-ancestor", {"nodes": [node("a"), node("b", foreach="{{ a.output }}")]},
     ["node 'b': foreach: '{{ a.output }}' references 'a', which is not an ancestor"]),
    ("foreach unknown node", {"nodes": [node("a", foreach="{{ zz.output.items }}")]},
     ["node 'a': foreach: '{{ zz.output.items }}' names unknown node 'zz'"]),
    ("foreach uses item", {"nodes": [node("a", foreach="{{ item }}")]},
     ["node 'a': foreach: '{{ item }}': 'item' is only available in the config of a node "
      "with 'foreach'"]),
    ("item outside foreach", {"nodes": [node("a", config={"x": "{{ item.name }}"})]},
     ["node 'a': config: '{{ item.name }}': 'item' is only available in the config of a node "
      "with 'foreach'"]),
    ("index in when", {"nodes": [node("a", foreach=[1], when="{{ index }}")]},
     ["node 'a': when: '{{ index }}': 'index' is only available in the config of a node "
      "with 'foreach'"]),
    ("max_concurrency without foreach", {"nodes": [node("a", max_concurrency=2)]},
     ["node 'a': max_concurrency: only applies to a node with 'foreach'"]),
    ("max_concurrency zero", {"nodes": [node("a", foreach=[1], max_concurrency=0)]},
     ["node 'a': max_concurrency: Input should be greater than or equal to 1"]),
    # timeout
    ("timeout unparsable", {"nodes": [node("a", timeout="soon")]},
     ["node 'a': timeout: invalid duration \"soon\""]),
    ("timeout zero", {"nodes": [node("a", timeout=0)]},
     ["node 'a': timeout: must be more than 0 seconds"]),
    ("timeout negative", {"nodes": [node("a", timeout=-1)]},
     ["node 'a': timeout: invalid duration -1"]),
    ("timeout bool", {"nodes": [node("a", timeout=True)]},
     ["node 'a': timeout: expected seconds or a duration string such as '30s', got True"]),
    ("timeout on an inline handler", {"nodes": [node("a", handler="sleep", timeout="1s")]},
     ["node 'a': timeout: does not apply to handler 'sleep', which runs in the workflow"]),
    ("retry on an inline handler",
     {"nodes": [node("a", handler="workflow", config={"name": "{{ input.flow }}"},
                     retry={"max_attempts": 3})]},
     ["node 'a': retry: does not apply to handler 'workflow', which runs in the workflow"]),
    # compensate
    ("compensate not an object", {"nodes": [node("a", compensate="undo")]},
     ["node 'a': compensate: Input should be a valid dictionary or instance of CompensateSpec"]),
    ("compensate without handler", {"nodes": [node("a", compensate={"config": {}})]},
     ["node 'a': compensate.handler: Field required"]),
    ("compensate unknown field", {"nodes": [node("a", compensate={"handler": "free", "x": 1})]},
     ["node 'a': unknown field 'compensate.x'"]),
    ("compensate unknown handler", {"nodes": [node("a", compensate={"handler": "nope"})]},
     ["node 'a': compensate: unknown handler 'nope'"]),
    ("compensate built-in missing config", {"nodes": [node("a", compensate={"handler": "hook"})]},
     ["node 'a': compensate: handler 'hook' needs config 'token'"]),
    ("compensate config non-ancestor",
     {"nodes": [node("a"), node("b", compensate={"handler": "free",
                                                 "config": {"a": "{{ a.output }}"}})]},
     ["node 'b': compensate.config: '{{ a.output }}' references 'a', which is not an ancestor"]),
    ("compensate config uses item", {"nodes": [node("a", foreach=[1], compensate={
        "handler": "free", "config": {"a": "{{ item }}"}})]},
     ["node 'a': compensate.config: '{{ item }}': a foreach node has one undo action for all "
      "its elements, where 'item' is not defined; '{{ a.output }}' is the list of their "
      "results"]),
    ("a template never closed",
     {"nodes": [node("a"),
                node("b", deps=["a"], config={"x": "{{ a.output ", "y": "{{ a.output }}"})]},
     ["node 'b': config: '{{ a.output ' opens a template with '{{' and never closes it with "
      "'}}'"]),
    ("a schema keyword not supported hides no template reading an undeclared property",
     {"input": {"type": "object", "properties": {"x": {"type": "string", "const": "a"}}},
      "nodes": [node("a", config={"n": "{{ input.typo }}"})]},
     ["input.properties.x: keyword 'const' is not supported",
      "node 'a': config: '{{ input.typo }}' reads input.typo, which the input schema does not "
      "declare (input declares x)"]),
    ("on_failure compensate with nothing to compensate",
     {"nodes": [node("a", on_failure="compensate")]},
     ["node 'a': on_failure: 'compensate' but no node has a 'compensate' action"]),
    ("defaults compensate with nothing to compensate",
     {"defaults": {"on_failure": "compensate"}, "nodes": GOOD},
     ["defaults.on_failure: 'compensate' but no node has a 'compensate' action"]),
    ("config not an object", {"nodes": [node("a", config=[1])]},
     ["node 'a': config: Input should be a valid dictionary"]),
    ("bad input schema", {"input": {"type": "thing"}, "nodes": GOOD},
     ["input.type: unknown type 'thing'"]),
    ("bad nested schema", {"input": {"properties": {"x": {"type": "nmber"}}}, "nodes": GOOD},
     ["input.properties.x.type: unknown type 'nmber'"]),
    ("output names unknown node", {"nodes": GOOD, "output": {"r": "{{ zz.output }}"}},
     ["output: '{{ zz.output }}' names unknown node 'zz'"]),
    ("unknown top-level field", {"nodes": GOOD, "steps": []}, ["unknown field 'steps'"]),
    ("a broken defaults block hides nothing else",
     {"defaults": {"on_failure": "explode"}, "input": {"type": "strin"}, "nodes": GOOD,
      "output": "{{ zz.output }}"},
     ["defaults.on_failure: Input should be 'fail', 'continue' or 'compensate'",
      "input.type: unknown type 'strin'", "output: '{{ zz.output }}' names unknown node 'zz'"]),
    ("a duplicate id beside other problems of that node",
     {"nodes": [node("a"), {**node("a"), "timeout": "soon"}]},
     ["node 'a': duplicate id", "node 'a': timeout: invalid duration \"soon\": use seconds "
      "(e.g. 30), a timedelta, or a string like \"30s\", \"5 minutes\", \"1h30m\", \"7 days\""]),
    ("the unknown handler of a node with a duplicate id",
     {"nodes": [node("a"), node("a", handler="nope"), node("b", handler="nope2")]},
     ["node 'a': duplicate id", "node 'b': unknown handler 'nope2'",
      "node 'a': unknown handler 'nope'"]),
    ("many problems at once",
     {"nodes": [node("a", deps=["ghost"]), node("a"), node("b", handler="nope", deps=["c"]),
                node("c", deps=["b"])]},
     ["node 'a': unknown dependency 'ghost'", "node 'a': duplicate id",
      "node 'b': unknown handler 'nope'", "node 'b': cycle: b -> c -> b"]),
    # A bad field, a bad id or a cycle hides nothing else.
    ("a bad field beside an unknown dependency and a non-ancestor template",
     {"nodes": [node("a", config={"x": "{{ b.output }}"}), node("b"),
                node("d", deps=["zzz"], timeout="banana")]},
     ["node 'd': timeout: invalid duration \"banana\"", "node 'd': unknown dependency 'zzz'",
      "node 'a': config: '{{ b.output }}' references 'b', which is not an ancestor"]),
    ("a node with a bad field is still there for the others",
     {"nodes": [node("a", retry={"max_attempts": 0}),
                node("b", deps=["a"], config={"x": "{{ a.output }}"})]},
     ["node 'a': retry.max_attempts: Input should be greater than or equal to 1"]),
    ("a node without a handler still has its dependencies and templates checked",
     {"nodes": [{"id": "a", "dependencies": ["zz"], "config": {"x": "{{ b.output }}"},
                 "max_concurrency": 2}, node("b")]},
     ["node 'a': handler: Field required", "node 'a': unknown dependency 'zz'",
      "node 'a': config: '{{ b.output }}' references 'b', which is not an ancestor",
      "node 'a': max_concurrency: only applies to a node with 'foreach'"]),
    ("a node with a bad id is still there for the others",
     {"nodes": [node("1a"), node("b", deps=["1a"], foreach="soon", config={"x": "{{ c }}"})]},
     ["node '1a': invalid id", "node 'b': foreach: must be a template",
      "node 'b': config: '{{ c }}' names unknown node 'c'"]),
    ("a bad foreach keeps item usable in the config",
     {"nodes": [node("a", foreach=5, max_concurrency=2, config={"x": "{{ item }}"})]},
     ["node 'a': foreach: must be a template"]),
    ("a bad compensate action is not a missing one",
     {"nodes": [node("a", compensate={"config": {}}), node("b", on_failure="compensate")]},
     ["node 'a': compensate.handler: Field required"]),
    ("a cycle hides no template problem of its nodes",
     {"nodes": [node("a", deps=["b"], config={"x": "{{ c.output }}"}),
                node("b", deps=["a"], when="{{ d.output }}"), node("c"),
                node("d", deps=["c"]), node("e", deps=["b"], config={"x": "{{ c.output }}"})]},
     ["node 'a': cycle: a -> b -> a",
      "node 'a': config: '{{ c.output }}' references 'c', which is not an ancestor",
      "node 'b': when: '{{ d.output }}' references 'd', which is not an ancestor",
      "node 'e': config: '{{ c.output }}' references 'c', which is not an ancestor"]),
    ("a broken defaults block still checks compensation",
     {"defaults": {"retry": {"max_attempts": 0}}, "nodes": [node("a", on_failure="compensate")]},
     ["defaults.retry.max_attempts: Input should be greater than or equal to 1",
      "node 'a': on_failure: 'compensate' but no node has a 'compensate' action"]),
    # Templates reading input properties a run may leave out; defaults that do not fit.
    ("a template reads an optional input property",
     {"input": {"type": "object", "properties": {"p": {"type": "object"}}},
      "nodes": [node("a", config={"x": "{{ input.p.name }}"})]},
     ["node 'a': config: '{{ input.p.name }}' reads input.p, which the input schema does not "
      "require: a run without it fails here (add it to 'required' or give it a 'default')"]),
    ("a template reads an optional property of a required one",
     {"input": {"type": "object", "required": ["p"], "properties": {"p": {
         "type": "object", "properties": {"name": {"type": "string"}}}}},
      "nodes": [node("a", when="{{ input.p.name }}",
                     compensate={"handler": "free", "config": {"a": "{{ input.p.name }}"}})]},
     ["node 'a': when: '{{ input.p.name }}' reads input.p.name",
      "node 'a': compensate.config: '{{ input.p.name }}' reads input.p.name"]),
    ("the output and a foreach read optional input properties",
     {"input": {"type": "object", "properties": {"items": {"type": "array", "items": {
         "type": "object", "properties": {"n": {"type": "integer"}}}}}},
      "nodes": [node("a", foreach="{{ input.items }}", config={"a": "{{ item }}"})],
      "output": "{{ input.items[0].n }}"},
     ["node 'a': foreach: '{{ input.items }}' reads input.items",
      "output: '{{ input.items[0].n }}' reads input.items"]),
    ("a template reads an input property the schema does not declare",
     {"input": {"type": "object", "required": ["xs"], "properties": {"xs": {"type": "array"}}},
      "nodes": [node("skip", when="{{ input.flag }}", config={"a": "{{ input.xs }}"})],
      "output": "{{ input.totl }}"},
     ["node 'skip': when: '{{ input.flag }}' reads input.flag, which the input schema does not "
      "declare (input declares xs): a run without it fails here (correct the name if it is a "
      "typo, or declare it under 'properties' with a 'default', or add it to 'required')",
      "output: '{{ input.totl }}' reads input.totl, which the input schema does not declare "
      "(input declares xs)"]),
    ("a template misspells a property of a required object",
     {"input": {"type": "object", "required": ["user"], "properties": {"user": {
         "type": "object", "required": ["name"], "properties": {"name": {"type": "string"},
                                                                "age": {"type": "integer"}}}}},
      "nodes": [node("a", config={"a": "{{ input.user.nmae }}"})]},
     ["node 'a': config: '{{ input.user.nmae }}' reads input.user.nmae, which the input schema "
      "does not declare (input.user declares name, age)"]),
    ("a template reads a property of an input that allows none",
     {"input": {"type": "object", "additionalProperties": False},
      "nodes": [node("a", config={"a": "{{ input.x }}"})]},
     ["node 'a': config: '{{ input.x }}' reads input.x, which the input schema does not declare "
      "(input declares no properties)"]),
    ("a default that does not fit its schema",
     {"input": {"type": "object", "properties": {"p": {"type": "object", "default": "none"}}},
      "nodes": GOOD},
     ["input.properties.p.default: expected object, got str"]),
]


@pytest.mark.parametrize(("spec", "expected"), [pytest.param(s, e, id=n) for n, s, e in MALFORMED])
def test_malformed_specs_report_every_problem(spec, expected):
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == len(expected), lines
    for line, want in zip(sorted(lines), sorted(expected), strict=True):
        assert line.startswith(want), (line, want)
    for want in expected:
        assert want.split(":")[0] in str(caught.value)


def test_a_valid_spec_parses_and_plans_waves():
    spec = dag.validate(dag.load_file(MATH))
    assert [n.id for n in spec.nodes][:2] == ["add", "subtract"]
    assert dag.waves(spec) == [["add", "subtract"], ["divide"], ["subtract2"], ["multiply"]]
    assert dag.node_prefixes(spec)["divide"] == "1.2."  # the third node in wave order


def test_grandparent_references_are_ancestors():
    spec = {"nodes": [node("a"), node("b", deps=["a"]),
                      node("c", deps=["b"], config={"x": "{{ a.output.deep[0] }}"})]}
    dag.validate(spec)


def test_new_node_fields_parse():
    spec = dag.validate({"nodes": [
        node("a", compensate={"handler": "subtract", "config": {"a": "{{ a.output }}", "b": 1}},
             timeout="1m30s"),
        node("b", deps=["a"], foreach="{{ a.output.items }}", max_concurrency=2,
             config={"a": "{{ item.x }}", "b": "{{ index }}", "c": "{{ a.output.n }}"},
             on_failure="compensate", timeout=2.5),
        node("c", foreach=[1, 2], config={"a": "{{ item }}", "b": 0}),
    ]})
    a, b, c = spec.nodes
    assert a.timeout_seconds() == 90 and b.timeout_seconds() == 2.5 and c.timeout is None
    assert a.compensate is not None and a.compensate.handler == "subtract"
    assert b.foreach == "{{ a.output.items }}" and b.max_concurrency == 2
    assert dag.validate(spec.to_json()) == spec  # round-trips through JSON


def test_handlers_are_optional_when_not_checked():
    dag.validate({"nodes": [node("a", handler="elsewhere")]}, check_handlers=False)


PROFILE_SCHEMA = {"type": "object", "required": ["user"], "properties": {
    "user": {"type": "string"},
    "profile": {"type": "object", "properties": {"name": {"type": "string", "default": "?"}}},
}}


@pytest.mark.parametrize("fix", [
    pytest.param({"required": ["user", "profile"]}, id="required"),
    pytest.param({"properties": {**PROFILE_SCHEMA["properties"], "profile": {
        "type": "object", "default": {}, "properties": {"name": {"type": "string",
                                                                  "default": "?"}}}}},
                 id="default"),
])
def test_input_reads_are_fine_once_required_or_given_a_default(fix):
    spec = {"input": {**PROFILE_SCHEMA, **fix},
            "nodes": [node("a", config={"a": "{{ input.profile.name }}", "b": "{{ input.user }}"})]}
    dag.validate(spec)


def test_input_reads_the_schema_does_not_describe_are_not_reported():
    spec = {"input": {"type": "object"}, "nodes": [node("a", config={"a": "{{ input.x.y }}"})]}
    dag.validate(spec)
    dag.validate({**spec, "input": None})
    # A required property is there in every run input, declared under 'properties' or not.
    required_only = {"type": "object", "required": ["x"], "properties": {"other": {}}}
    dag.validate({**spec, "input": required_only})


@pytest.mark.parametrize("declared", [
    pytest.param({"type": "boolean", "default": False}, id="with-a-default"),
    pytest.param({"type": "boolean"}, id="required"),
])
def test_an_undeclared_input_read_is_fine_once_declared_as_the_problem_says(declared):
    schema = {"type": "object", "required": ["xs"], "properties": {"xs": {"type": "array"}}}
    spec = {"input": schema, "nodes": [node("skip", when="{{ input.flag }}")]}
    with pytest.raises(dag.DagValidationError, match="does not declare"):
        dag.validate(spec)
    fixed = {**schema, "properties": {**schema["properties"], "flag": declared}}
    if "default" not in declared:
        fixed["required"] = ["xs", "flag"]
    dag.validate({**spec, "input": fixed})


def test_a_recorded_spec_with_an_optional_input_read_still_validates():
    """Runs started before the check was added go on replaying (and are shown by inspect)."""
    spec = {"input": PROFILE_SCHEMA, "nodes": [node("a", config={"a": "{{ input.profile }}"})]}
    with pytest.raises(dag.DagValidationError):
        dag.validate(spec)
    dag.validate(spec, check_handlers=False)
    dag.validate(spec, check_inputs=False)
    with pytest.raises(dag.DagValidationError):
        dag.validate(spec, check_handlers=False, check_inputs=True)
    # Defaults were not checked either (nor used) when such runs started.
    misfit = {"type": "object", "properties": {"n": {"type": "integer", "default": "one"}}}
    dag.validate({**spec, "input": misfit}, check_handlers=False)


IDS = frozenset({"a", "b", "input"})
OUTPUTS = {"a": {"x": [10, {"y": "deep"}], "n": 3}, "b": 2.5}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ a.output.n }}", 3),
        ("  {{a.output.n}} ", 3),
        ("{{ b.output }}", 2.5),
        ("{{ a.output.x[1].y }}", "deep"),
        ("{{ a.output.x[-2] }}", 10),
        ('{{ a.output["n"] }}', 3),
        ("{{ a.output.x }}", [10, {"y": "deep"}]),
        ("n={{ a.output.n }}, b={{ b.output }}", "n=3, b=2.5"),
        ("list {{ a.output.x }}", 'list [10, {"y": "deep"}]'),
        ("{{ input.user.name }}", "ada"),
        ("{{ input }}", {"user": {"name": "ada"}, "flag": True}),
        ("{{ input.flag }}", True),
        ({"k": ["{{ b.output }}", {"z": "{{ input.user.name }}!"}]}, {"k": [2.5, {"z": "ada!"}]}),
        ("no templates", "no templates"),
        (7, 7),
    ],
)
def test_templates_resolve_and_keep_types(value, expected):
    got = render(value, {"user": {"name": "ada"}, "flag": True}, OUTPUTS, "node 'c'", IDS)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ a.output.missing }}", "'{{ a.output.missing }}': a.output.missing not found"),
        ("{{ a.output.x[5] }}", "node 'c': '{{ a.output.x[5] }}': a.output.x[5] not found"),
        ("{{ a.output.x[1].y.z }}", "a.output.x[1].y.z not found (a.output.x[1].y is a str)"),
        ("{{ input.user.age }}", "node 'c': '{{ input.user.age }}': input.user.age not found"),
        ("{{ b.output.k }}", "b.output.k not found (b.output is a float)"),
        ("x {{ a.output.nope }}", "a.output.nope not found"),
    ],
)
def test_missing_paths_name_node_and_path(value, message):
    with pytest.raises(TemplateError) as caught:
        render(value, {"user": {"name": "ada"}}, OUTPUTS, "node 'c'", IDS)
    assert message in str(caught.value)


def test_foreach_variables_resolve_with_paths():
    variables = {"item": {"name": "ada", "tags": ["x"]}, "index": 2}
    got = render({"n": "{{ item.name }}", "t": "{{ item.tags[0] }}", "i": "{{ index }}",
                  "s": "#{{ index }} {{ item.name }}", "o": "{{ b.output }}"},
                 None, OUTPUTS, "node 'c' [2]", IDS, variables)
    assert got == {"n": "ada", "t": "x", "i": 2, "s": "#2 ada", "o": 2.5}
    with pytest.raises(TemplateError, match=r"node 'c' \[2\]: '\{\{ item.age \}\}': "
                       r"item.age not found \(item is an object with keys 'name', 'tags'\)"):
        render("{{ item.age }}", None, OUTPUTS, "node 'c' [2]", IDS, variables)
    with pytest.raises(TemplateError, match="'item' is only available"):
        render("{{ item }}", None, OUTPUTS, "node 'c'", IDS)


def test_a_node_called_input_is_referenced_with_output():
    outputs = {"input": {"q": 1}}
    assert render("{{ input.output.q }}", {"output": 9}, outputs, "n", IDS) == 1
    assert render("{{ input.q }}", {"q": 2}, outputs, "n", IDS) == 2


def big_spec(width=500, depth=500):
    """A wide fan-out (width nodes after a root, gathered by one node) then a deep chain."""
    nodes = [node("root", handler="task", config={"name": "root"})]
    nodes += [
        node(f"w{i}", handler="task", deps=["root"], config={"name": f"w{i}"})
        for i in range(width)
    ]
    nodes.append(node("gather", handler="task", deps=[f"w{i}" for i in range(width)],
                      config={"name": "gather", "received": "{{ root.output.task }}"}))
    previous = "gather"
    for i in range(depth - 2):
        nodes.append(node(f"d{i}", handler="task", deps=[previous],
                          config={"name": f"d{i}", "received": "{{ root.output.task }}"}))
        previous = f"d{i}"
    return {"nodes": nodes, "output": f"{{{{ {previous}.output }}}}"}


def test_a_thousand_node_dag_validates():
    spec = big_spec()
    assert len(spec["nodes"]) == 1000
    started = time.perf_counter()
    parsed = dag.validate(spec)
    elapsed = time.perf_counter() - started
    print(f"validated 1000 nodes in {elapsed * 1000:.0f} ms")
    assert len(dag.waves(parsed)) == 501


def test_waves_and_advice_take_a_dict_or_a_path_as_validate_does(tmp_path):
    spec = {"nodes": [
        {"id": "a", "handler": "input"},
        {"id": "h", "handler": "hook", "dependencies": ["a"], "config": {"token": "t"}},
    ]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    for given in (spec, path, str(path), dag.validate(spec)):
        assert dag.waves(given) == [["a"], ["h"]]
        assert [p.node for p in dag.advice(given)] == ["h"]
