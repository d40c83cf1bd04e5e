"""``when`` conditions, and what templates make of skipped nodes, rich values and config keys."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest

import durable
import durable.dag as dag
from durable import WorkflowFailed

ran: Counter[str] = Counter()
_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear():
    ran.clear()


@dag.handler("cond.note")
def note(name: str, value=None):
    with _lock:
        ran[name] += 1
    return value


@dag.handler("cond.score")
def score(amount: float):
    return {"high": amount > 100, "low": amount < 10, "tier": "gold" if amount > 1000 else "basic"}


@dag.handler("cond.fail")
def fail():
    raise ValueError("no")


@dag.handler("cond.row")
def row():
    return {"id": 7, "at": dt.datetime(2024, 1, 2, 3, 4, 5), "price": Decimal("9.50"),
            "tags": {"b"}}


def _gated(when: str, name: str) -> dict:
    return {"id": name, "handler": "cond.note", "dependencies": ["s"], "when": when,
            "config": {"name": name}}


def test_conditions_compare_negate_and_combine_templates(engine):
    spec = {
        "input": {"type": "object", "required": ["amount"],
                  "properties": {"amount": {"type": "number"}}},
        "nodes": [
            {"id": "s", "handler": "cond.score", "config": {"amount": "{{ input.amount }}"}},
            _gated("{{ input.amount }} > 100", "big"),
            _gated("not {{ s.output.high }}", "not_high"),
            _gated("{{ s.output.high }} and {{ s.output.low }}", "high_and_low"),
            _gated("{{ s.output.tier }} in ['gold', 'silver']", "premium"),
            _gated("{{ s.output.tier }} == 'basic' or {{ input.amount }} >= 5000", "basic"),
            _gated("0 < {{ input.amount }} <= 500", "chained"),
        ],
    }
    dag.validate(spec)
    dag.run(spec, {"amount": 5})
    assert sorted(ran) == ["basic", "chained", "not_high"]
    ran.clear()
    dag.run(spec, {"amount": 2000})
    assert sorted(ran) == ["big", "premium"]


def test_a_condition_that_is_not_one_validation_names_the_node():
    bad = {
        "plain": "yes",
        "trailing": "{{ input.x }} >",
        "bare_name": "{{ input.x }} == gold",
        "call": "len({{ input.x }}) > 1",
        "arith": "{{ input.x }} + 1",
    }
    spec = {"nodes": [{"id": "s", "handler": "cond.note", "config": {"name": "s"}}] + [
        _gated(when, nid) for nid, when in bad.items()]}
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    lines = sorted(str(p) for p in caught.value.problems)
    assert [line.split(":")[0] for line in lines] == [f"node {n!r}" for n in sorted(bad)]
    by_node = {line.split(":")[0]: line for line in lines}
    assert "must be a template" in by_node["node 'plain'"]
    assert "cannot be parsed" in by_node["node 'trailing'"]
    assert "'gold' is neither a template nor a literal (quote a string" in by_node[
        "node 'bare_name'"]
    assert "'len(" in by_node["node 'call'"] and "is not allowed" in by_node["node 'call'"]
    assert "is not allowed" in by_node["node 'arith'"]


def test_a_comparison_the_values_cannot_make_fails_the_run_naming_them(engine):
    spec = {"nodes": [
        {"id": "s", "handler": "cond.note", "config": {"name": "s", "value": "text"}},
        _gated("{{ s.output }} > 3", "n"),
    ]}
    with pytest.raises(WorkflowFailed, match=r"node 'n': when '\{\{ s.output \}\} > 3': "
                       r"cannot evaluate 'text' > 3 \(str and int\)"):
        dag.start(spec).result(timeout=20)
    assert ran["n"] == 0


@pytest.mark.parametrize("word", ["off", "OFF", "no", "false", "0", "null", ""])
def test_false_words_skip_a_node(engine, word):
    spec = {"nodes": [{"id": "n", "handler": "cond.note", "when": "{{ input.flag }}",
                       "config": {"name": "n"}}]}
    dag.run(spec, {"flag": word})
    assert ran["n"] == 0


def test_an_all_done_node_reads_null_at_any_path_of_a_skipped_or_failed_dependency(engine):
    spec = {"nodes": [
        {"id": "b", "handler": "cond.note", "when": False, "config": {"name": "b"}},
        {"id": "f", "handler": "cond.fail", "on_failure": "continue",
         "retry": {"max_attempts": 1}},
        {"id": "d", "handler": "cond.note", "dependencies": ["b", "f"], "trigger": "all_done",
         "config": {"name": "d", "value": {"k": "{{ b.output.k }}", "i": "{{ f.output[0] }}"}}},
    ], "output": {"d": "{{ d.output }}", "bk": "{{ b.output.k.j }}"}}
    assert dag.run(spec, {}) == {"d": {"k": None, "i": None}, "bk": None}
    assert ran["d"] == 1


def test_a_completed_node_still_reports_a_missing_path(engine):
    spec = {"nodes": [
        {"id": "a", "handler": "cond.note", "config": {"name": "a", "value": {"k": 1}}},
        {"id": "d", "handler": "cond.note", "dependencies": ["a"], "trigger": "all_done",
         "config": {"name": "d", "value": "{{ a.output.missing }}"}},
    ]}
    with pytest.raises(WorkflowFailed, match="a.output.missing not found"):
        dag.start(spec).result(timeout=20)


def test_rich_values_embedded_in_text_are_written_as_json_and_iso_times(engine):
    spec = {"nodes": [
        {"id": "fetch", "handler": "cond.row"},
        {"id": "use", "handler": "cond.note", "dependencies": ["fetch"], "config": {
            "name": "use",
            "value": "Analyze: {{ fetch.output }} at {{ fetch.output.at }} for "
                     "{{ fetch.output.price }}"}},
    ], "output": "{{ use.output }}"}
    text = dag.run(spec)
    assert text == ('Analyze: {"id": 7, "at": "2024-01-02T03:04:05", "price": "9.50", '
                    '"tags": ["b"]} at 2024-01-02T03:04:05 for 9.50')


def test_templates_in_config_keys_are_rendered(engine):
    spec = {"nodes": [
        {"id": "a", "handler": "cond.note", "config": {"name": "a", "value": "k"}},
        {"id": "b", "handler": "cond.note", "dependencies": ["a"], "config": {
            "name": "b",
            "value": {"{{ a.output }}": 1, "headers": {"X-{{ a.output }}": "v"}}}},
    ], "output": "{{ b.output }}"}
    assert dag.run(spec) == {"k": 1, "headers": {"X-k": "v"}}


def test_a_template_in_a_key_naming_an_unknown_node_is_a_validation_error():
    spec = {"nodes": [{"id": "a", "handler": "cond.note",
                       "config": {"name": "a", "value": {"{{ nobody.output }}": 1}}}]}
    with pytest.raises(dag.DagValidationError, match="unknown node 'nobody'"):
        dag.validate(spec)


def test_reserved_ids_and_a_foreach_that_is_not_one_template_are_validation_errors():
    spec = {"nodes": [
        {"id": "item", "handler": "cond.note", "config": {"name": "item"}},
        {"id": "each", "handler": "cond.note", "foreach": "items: {{ input.d }}",
         "config": {"name": "each"}},
    ]}
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    lines = sorted(str(p) for p in caught.value.problems)
    assert lines[0].startswith("node 'each': foreach: must be a template")
    assert lines[1].startswith("node 'item': the id 'item' is reserved")


_gate = threading.Event()


@dag.handler("cond.mail")
def mail(to: str):
    # Stands for sending a link: the test "clicks" it before this node returns.
    with _lock:
        ran["mail"] += 1
    assert _gate.wait(10)
    return f"sent to {to}"


def _early_hook_spec(early: bool) -> dict:
    hook_config = {"token": "verify:{{ input.user }}", "timeout": "1h"}
    if early:
        hook_config["open_at_start"] = True
    return {"nodes": [
        {"id": "mail", "handler": "cond.mail", "config": {"to": "{{ input.user }}"}},
        {"id": "verify", "handler": "hook", "dependencies": ["mail"], "config": hook_config},
    ], "output": "{{ verify.output }}"}


def _start_mailing(early: bool, user: str) -> durable.Run:
    """Start a run and return once its mail node runs (and waits for the test)."""
    _gate.clear()
    run = dag.start(_early_hook_spec(early=early), {"user": user}, run_id=f"mail-{user}")
    deadline = time.monotonic() + 10
    while ran["mail"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return run


def test_a_hook_opened_at_start_keeps_a_payload_sent_before_its_node_is_reached(engine):
    run = _start_mailing(early=True, user="u1")
    durable.resume_hook("verify:u1", {"verified": True})  # clicked while the mail node runs
    _gate.set()
    assert run.result(timeout=20) == {"verified": True}


def test_without_open_at_start_the_hook_does_not_exist_before_its_node(engine):
    run = _start_mailing(early=False, user="u2")
    with pytest.raises(durable.HookNotFound):
        durable.resume_hook("verify:u2", {"verified": True})
    _gate.set()
    run.cancel()


def test_open_at_start_reads_only_the_input_and_takes_a_boolean():
    spec = {"nodes": [
        {"id": "a", "handler": "cond.note", "config": {"name": "a"}},
        {"id": "h", "handler": "hook", "dependencies": ["a"],
         "config": {"token": "t:{{ a.output }}", "open_at_start": True}},
        {"id": "g", "handler": "hook", "config": {"token": "t", "open_at_start": "yes"}},
    ]}
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    lines = sorted(str(p) for p in caught.value.problems)
    assert lines[0].startswith("node 'g': config 'open_at_start' must be true or false")
    assert lines[1].startswith("node 'h': config 'token': a hook with 'open_at_start' opens "
                               "before any node runs")


def test_a_hook_token_another_run_holds_fails_the_run_even_under_continue(engine):
    spec = {"nodes": [{"id": "h", "handler": "hook", "on_failure": "continue",
                       "config": {"token": "shared-token"}}]}
    first = dag.start(spec, run_id="holder")
    deadline = time.monotonic() + 10
    while not engine.world.list_hooks("holder"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = dag.start(spec, run_id="taker")
    with pytest.raises(WorkflowFailed, match="HookConflict|shared-token"):
        second.result(timeout=20)
    first.cancel()


@dag.handler("cond.item")
def item_handler(n: int):
    with _lock:
        ran[f"item {n}"] += 1
    if n == 99:
        raise durable.FatalError("99 is refused")
    return n * 10


@dag.handler("cond.undo")
def undo(done: list):
    with _lock:
        ran[f"undo {done}"] += 1


def _each(on_failure: str) -> dict:
    return {"id": "each", "handler": "cond.item", "foreach": "{{ input.items }}",
            "on_failure": on_failure, "config": {"n": "{{ item }}"},
            "compensate": {"handler": "cond.undo", "config": {"done": "{{ each.output }}"}}}


def test_a_foreach_node_that_continues_keeps_the_elements_that_succeeded(engine):
    spec = {"nodes": [
        _each("continue"),
        {"id": "tally", "handler": "cond.note", "dependencies": ["each"], "trigger": "all_done",
         "config": {"name": "tally", "value": "{{ each.output }}"}},
    ], "output": "{{ tally.output }}"}
    assert dag.run(spec, {"items": [1, 99, 3]}) == [10, None, 30]
    assert ran["item 1"] == ran["item 3"] == ran["tally"] == 1


def test_a_foreach_node_that_compensates_undoes_the_elements_that_succeeded(engine):
    spec = {"nodes": [_each("compensate")]}
    with pytest.raises(WorkflowFailed, match=r"99 is refused \(1 of 3 elements failed\)"):
        dag.start(spec, {"items": [1, 99, 3]}).result(timeout=20)
    assert ran["undo [10, None, 30]"] == 1


_at_once = [0, 0]
_crowded = threading.Event()


@dag.handler("cond.busy")
def busy(i: int, crowd: int):
    with _lock:
        _at_once[0] += 1
        _at_once[1] = max(_at_once)
        if _at_once[0] >= crowd:
            _crowded.set()
    try:
        _crowded.wait(0.05 if crowd <= 2 else 10)  # holds until that many run at once
    finally:
        with _lock:
            _at_once[0] -= 1
    return i


@pytest.mark.parametrize("limit", [2, 40])
def test_the_spec_says_how_many_nodes_run_at_once(engine, limit):
    if engine.forced_replay:
        pytest.skip("forced replay suspends at every step: nodes do not overlap")
    _at_once[:] = [0, 0]
    _crowded.clear()
    spec = {"max_concurrency": limit, "version": 3, "tags": ["load"],
            "nodes": [{"id": f"n{i}", "handler": "cond.busy", "config": {"i": i, "crowd": 33}}
                      for i in range(40)]}
    if limit == 2:
        for node in spec["nodes"]:
            node["config"]["crowd"] = 2
    dag.run(spec)
    if limit == 2:
        assert _at_once[1] == 2
    else:
        assert _crowded.is_set() and _at_once[1] >= 33  # past the default 32


# -- retries, early hooks and templates after an adversarial trial ----------------------------

_fixed = threading.Event()


@dag.handler("cond.until_fixed")
def until_fixed(name: str):
    with _lock:
        ran[name] += 1
    if not _fixed.is_set():
        raise durable.FatalError(f"{name}: not yet")
    return f"{name} ok"


def test_a_retry_runs_again_only_the_failure_that_failed_the_run(engine):
    _fixed.clear()
    spec = {"nodes": [
        {"id": "optional", "handler": "cond.until_fixed", "on_failure": "continue",
         "config": {"name": "optional"}},
        {"id": "report", "handler": "cond.note", "dependencies": ["optional"],
         "trigger": "all_done", "config": {"name": "report", "value": "{{ optional.output }}"}},
        {"id": "gate", "handler": "cond.until_fixed", "dependencies": ["report"],
         "config": {"name": "gate"}},
    ], "output": {"optional": "{{ optional.output }}", "report": "{{ report.output }}",
                  "gate": "{{ gate.output }}"}}
    run = dag.start(spec, run_id="retried-dag")
    with pytest.raises(WorkflowFailed, match="gate: not yet"):
        run.result(timeout=20)
    _fixed.set()
    run.retry()
    # The report saw 'optional' fail: it stays failed, and only the gate runs again.
    assert run.result(timeout=20) == {"optional": None, "report": None, "gate": "gate ok"}
    assert ran["optional"] == 1 and ran["gate"] == 2 and ran["report"] == 1


def test_conditions_that_validation_refuses_after_a_trial():
    cases = {
        "slot": "{{ a.output }} == _durable_template_0",
        "deep": "not " * 60 + "{{ a.output }}",
        "long": "{{ a.output }} in [" + "1, " * 2000 + "1]",
        "quoted": "'{{ a.output }}' == 'x'",
        "stray": "{{ a.output }} }}",
        "dunder": "{{ a.output }}.__class__",
    }
    spec = {"nodes": [{"id": "a", "handler": "cond.note", "config": {"name": "a"}}] + [
        {"id": nid, "handler": "cond.note", "dependencies": ["a"], "when": when,
         "config": {"name": nid}} for nid, when in cases.items()]}
    with pytest.raises(dag.DagValidationError) as caught:
        dag.validate(spec)
    by_node = {p.node: p.message for p in caught.value.problems}
    assert sorted(by_node) == sorted(cases)
    assert "a name of durable's own" in by_node["slot"]
    assert "nested more than" in by_node["deep"]
    assert "longer than" in by_node["long"]
    assert "a template inside quotes" in by_node["quoted"]
    assert "cannot be parsed" in by_node["stray"]
    assert "'{{ a.output }}.__class__' is not allowed" in by_node["dunder"]


def test_a_stray_closing_brace_pair_is_text(engine):
    spec = {"nodes": [
        {"id": "a", "handler": "cond.note", "config": {"name": "a", "value": 5}},
        {"id": "b", "handler": "cond.note", "dependencies": ["a"],
         "config": {"name": "b", "value": "{{ a.output }} }}"}},
    ], "output": "{{ b.output }}"}
    assert dag.run(spec) == "5 }}"


def test_two_keys_rendering_alike_fail_the_run(engine):
    spec = {"nodes": [
        {"id": "a", "handler": "cond.note", "config": {"name": "a", "value": "x"}},
        {"id": "b", "handler": "cond.note", "dependencies": ["a"],
         "config": {"name": "b", "value": {"{{ a.output }}": 1, "x": 2}}},
    ]}
    with pytest.raises(WorkflowFailed, match="renders as 'x', which the mapping already has"):
        dag.start(spec).result(timeout=20)


def test_an_all_done_node_reads_null_through_a_failed_element(engine):
    spec = {"nodes": [
        {**_each("continue"), "compensate": None},
        {"id": "first", "handler": "cond.note", "dependencies": ["each"], "trigger": "all_done",
         "config": {"name": "first", "value": ["{{ each.output[0] }}", "{{ each.output[1].x }}"]}},
    ], "output": "{{ first.output }}"}
    del spec["nodes"][0]["compensate"]
    assert dag.run(spec, {"items": [1, 99]}) == [10, None]


def test_an_early_hook_reads_only_the_input_not_a_node_called_inputs():
    spec = {"nodes": [
        {"id": "inputs", "handler": "cond.note", "config": {"name": "inputs"}},
        {"id": "h", "handler": "hook", "dependencies": ["inputs"],
         "config": {"token": "{{ inputs.output.tok }}", "open_at_start": True}},
    ]}
    with pytest.raises(dag.DagValidationError, match="opens before any node runs"):
        dag.validate(spec)


def test_an_early_hook_with_a_bad_token_fails_the_run_naming_the_node(engine):
    spec = {"input": {"type": "object", "required": ["tok"], "properties": {"tok": {}}},
            "nodes": [{"id": "h", "handler": "hook",
                       "config": {"token": "{{ input.tok }}", "open_at_start": True}}]}
    with pytest.raises(WorkflowFailed, match=r"node 'h' \(handler 'hook'\): hook handler: "
                       r"'token' must be a non-empty string, got None"):
        dag.start(spec, {"tok": None}).result(timeout=20)


def test_an_early_hook_of_a_skipped_node_is_closed_so_the_run_can_be_retried(engine):
    _fixed.clear()
    spec = {"nodes": [
        {"id": "h", "handler": "hook", "when": False,
         "config": {"token": "never-asked", "open_at_start": True}},
        {"id": "gate", "handler": "cond.until_fixed", "config": {"name": "gate"}},
    ]}
    run = dag.start(spec, run_id="early-skipped")
    with pytest.raises(WorkflowFailed, match="gate: not yet"):
        run.result(timeout=20)
    assert any(e.kind == "hook_disposed" for e in run.events())
    with pytest.raises(durable.HookNotFound):
        durable.resume_hook("never-asked", 1)
    _fixed.set()
    run.retry()
    assert run.result(timeout=20) == {"gate": "gate ok", "h": None}
