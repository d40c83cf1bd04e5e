"""``foreach``, ``timeout`` and ``on_failure: compensate`` through the engine, live and replayed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

import durable
import durable.dag as dag
from durable import WorkflowCancelled, WorkflowFailed, WorkflowTimedOut
from durable._serialization import error_from_dict, error_to_dict
from tests.cancelling import HOW, cancel_while_held, wait_on_hook

calls: Counter[str] = Counter()
log: list[str] = []
_lock = threading.Lock()
_running = [0, 0]  # [now, most at once]
_release = threading.Event()


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()
    log.clear()
    _running[:] = [0, 0]
    _release.clear()
    yield
    _release.set()  # let abandoned (timed-out) handler threads finish


@dag.handler("feat.echo")
def echo(name: str, value=None, fail: bool = False, pause: float = 0.0):
    with _lock:
        calls[name] += 1
        log.append(name)
        _running[0] += 1
        _running[1] = max(_running)
    try:
        if pause:
            time.sleep(pause)
        if fail:
            raise ValueError(f"{name} failed")
        return {"name": name, "value": value}
    finally:
        with _lock:
            _running[0] -= 1


@dag.handler("feat.slow")
def slow(name: str, slow_attempts: int = 99):
    with _lock:
        calls[name] += 1
        attempt = calls[name]
    if attempt <= slow_attempts:
        _release.wait(5)
    return f"{name} done on attempt {attempt}"


@dag.handler("feat.aslow")
async def aslow(name: str):
    with _lock:
        calls[name] += 1
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        with _lock:
            log.append(f"{name} cancelled")
        raise
    return "never"


def node(id, handler="feat.echo", deps=(), **extra):
    return {"id": id, "handler": handler, "dependencies": list(deps), **extra}


def step_names(run):
    return [e.name for e in run.events() if e.kind == "step_completed"]


def steps_per_node(run, spec):
    prefixes = dag.node_prefixes(spec)
    done = Counter(e.op_id for e in run.events() if e.kind == "step_completed")
    return {nid: sum(n for op, n in done.items() if op.startswith(p)) for nid, p in
            prefixes.items()}


def failure(run) -> WorkflowFailed:
    with pytest.raises(WorkflowFailed) as caught:
        run.result(timeout=20)
    return caught.value


# -- foreach ---------------------------------------------------------------------------------


FAN = {
    "nodes": [
        node("start", config={"name": "start", "value": "{{ input.items }}"}),
        node("fan", deps=["start"], foreach="{{ start.output.value }}",
             config={"name": "item-{{ index }}", "value": "{{ item }}",
                     # later items finish first: the output order must not depend on it
                     "pause": "{{ input.pause }}"}),
        node("gather", deps=["fan"],
             config={"name": "gather", "value": "{{ fan.output }}"}),
    ],
    "output": "{{ gather.output.value }}",
}


def test_foreach_runs_once_per_element_and_gathers_in_order(engine):
    items = [{"n": i} for i in range(5)]
    run = dag.start(FAN, {"items": items, "pause": 0.01})
    assert run.result(timeout=20) == [
        {"name": f"item-{i}", "value": {"n": i}} for i in range(5)
    ]
    assert steps_per_node(run, FAN) == {"start": 1, "fan": 5, "gather": 1}
    assert sorted(step_names(run)) == ["feat.echo"] * 7
    assert {name: calls[name] for name in calls} == {
        "start": 1, "gather": 1, **{f"item-{i}": 1 for i in range(5)}
    }
    assert _running[1] > 1  # the elements ran concurrently


def test_foreach_over_an_empty_list_outputs_an_empty_list(engine):
    assert dag.run(FAN, {"items": [], "pause": 0}) == []
    assert dict(calls) == {"start": 1, "gather": 1}


def test_dag_errors_are_recorded_under_their_public_names():
    assert error_to_dict(dag.TemplateError("x"))["type"] == "durable.dag.TemplateError"
    assert error_to_dict(dag.DagNodeFailed("x"))["type"] == "durable.dag.DagNodeFailed"
    assert error_to_dict(dag.HttpStatusError("GET u: 404"))["type"] == (
        "durable.dag.HttpStatusError"
    )
    # Logs written before keep their private name, which still resolves.
    older = {**error_to_dict(dag.TemplateError("x")),
             "type": "durable.dag._templates.TemplateError"}
    assert type(error_from_dict(older)) is dag.TemplateError
    assert type(error_from_dict(error_to_dict(dag.TemplateError("x")))) is dag.TemplateError


def test_foreach_max_concurrency_and_a_literal_list(engine):
    spec = {"nodes": [node("fan", foreach=["a", "b", "c", "d"], max_concurrency=1,
                           config={"name": "{{ item }}", "value": "{{ index }}", "pause": 0.01})]}
    assert dag.run(spec) == {"fan": [{"name": n, "value": i} for i, n in enumerate("abcd")]}
    assert _running[1] == 1


def test_foreach_that_is_not_a_list_fails_the_run_naming_the_node(engine):
    run = dag.start(FAN, {"items": {"a": 1}, "pause": 0})
    error = failure(run)
    assert error.error_type == "durable.dag.TemplateError"
    assert "node 'fan': foreach ({{ start.output.value }}) must resolve to a list, got dict" in (
        str(error)
    )
    assert calls["gather"] == 0


def test_a_bad_duration_fails_the_run_even_where_failures_continue(engine):
    # A typo in the input must not pass for the timeout the spec continues after.
    spec = {"nodes": [
        {"id": "approve", "handler": "hook", "on_failure": "continue",
         "config": {"token": "approve:1", "timeout": "{{ input.wait }}"}},
        {"id": "after", "handler": "output", "dependencies": ["approve"], "trigger": "all_done",
         "config": {"value": "{{ approve.output }}"}},
    ]}
    error = failure(dag.start(spec, {"wait": "5 fortnights"}))
    assert error.error_type == "durable.dag.DagNodeFailed"
    assert "node 'approve' (handler 'hook'): invalid duration \"5 fortnights\"" in str(error)


def test_a_config_the_handler_does_not_take_fails_at_once():
    with pytest.raises(dag.HandlerConfigError, match=r"config does not fit handler 'feat.echo': "
                       r"missing a required argument: 'name' \(it takes: name, value, fail, "
                       r"pause\)"):
        dag._handlers.call("feat.echo", {"nmae": "x"})
    assert issubclass(dag.HandlerConfigError, durable.FatalError)  # never retried


BUILT_IN_TYPOS = {"nodes": [
    {"id": "nap", "handler": "sleep", "config": {"duraton": "7 days"}},
    {"id": "wait", "handler": "hook", "config": {"token": "t", "timout": "1 day"}},
    {"id": "call", "handler": "http", "config": {"url": "http://x", "methd": "POST"}},
    {"id": "child", "handler": "workflow", "config": {"name": "durable.dag", "kwarg": {}}},
]}


def test_a_misspelt_key_of_a_built_in_handler_is_a_validation_error():
    with pytest.raises(dag.DagValidationError) as invalid:
        dag.validate(BUILT_IN_TYPOS)
    assert [str(p) for p in invalid.value.problems] == [
        "node 'nap': handler 'sleep' takes no config 'duraton' (it takes: duration)",
        "node 'wait': handler 'hook' takes no config 'timout' (it takes: token, timeout, "
        "open_at_start)",
        "node 'call': handler 'http' takes no config 'methd' (it takes: url, method, params, "
        "headers, json, timeout)",
        "node 'child': handler 'workflow' takes no config 'kwarg' (it takes: name, args, "
        "kwargs)",
    ]


def test_a_misspelt_key_fails_a_recorded_run_even_where_failures_continue(engine):
    # A spec recorded before the check (or started unchecked) meets it when the node runs: a
    # hook's misspelt timeout would otherwise wait for ever.
    spec = {"nodes": [
        {"id": "wait", "handler": "hook", "on_failure": "continue",
         "config": {"token": "t", "timout": "1 day"}},
    ]}
    error = failure(dag.dag_workflow.start(spec, {}))
    assert "handler 'hook' takes no config 'timout'" in str(error)


def test_the_python_handler_checks_its_function_and_arguments(engine):
    spec = {"nodes": [{"id": "f", "handler": "python",
                       "config": {"function": "fractions:Fraction", "numeratr": 1}}]}
    error = failure(dag.start(spec, {}))
    assert "python handler: config does not fit handler 'fractions:Fraction'" in str(error)
    assert "numeratr" in str(error)
    spec["nodes"][0]["config"] = {"function": "fractions:Fractoin"}
    error = failure(dag.start(spec, {}))
    assert "python handler: cannot find function 'fractions:Fractoin'" in str(error)


def test_a_failing_element_fails_the_node_after_its_retries(engine):
    spec = {
        "defaults": {"retry": {"max_attempts": 2, "initial_delay": 0}},
        "nodes": [
            node("fan", foreach="{{ input }}",
                 config={"name": "e{{ index }}", "fail": "{{ item }}"}),
            node("after", deps=["fan"], trigger="all_done",
                 config={"name": "after", "value": "{{ fan.output }}"}),
        ],
    }
    error = failure(dag.start(spec, [False, True, False]))
    assert "node 'fan' (handler 'feat.echo') failed: ValueError: e1 failed" in str(error)
    assert calls["e1"] == 2 and calls["e0"] == 1 and calls["e2"] == 1
    calls.clear()
    spec["nodes"][0]["on_failure"] = "continue"
    # The elements that succeeded stay in the output (null for the failed one).
    assert dag.run(spec, [False, True]) == {
        "after": {"name": "after", "value": [{"name": "e0", "value": None}, None]}
    }


# -- timeout ---------------------------------------------------------------------------------


def test_a_handler_exceeding_its_timeout_fails_after_its_retries(engine):
    spec = {"nodes": [node("wait", handler="feat.slow", timeout="200ms",
                           retry={"max_attempts": 2, "initial_delay": 0},
                           config={"name": "wait"})]}
    started = time.monotonic()
    error = failure(dag.start(spec))
    assert time.monotonic() - started < 4  # neither attempt waited for the handler
    assert ("node 'wait' (handler 'feat.slow') failed: TimeoutError: handler 'feat.slow' did "
            "not finish within its 0.2s timeout") in str(error)
    assert calls["wait"] == 2


def test_a_timed_out_attempt_is_retried(engine):
    spec = {"nodes": [node("wait", handler="feat.slow", timeout=0.2,
                           retry={"max_attempts": 3, "initial_delay": 0},
                           config={"name": "wait", "slow_attempts": 1})]}
    run = dag.start(spec)
    assert run.result(timeout=20) == {"wait": "wait done on attempt 2"}
    retried = [e for e in run.events() if e.kind == "step_retrying"]
    assert len(retried) == 1 and calls["wait"] == 2


def test_an_async_handler_is_cancelled_at_its_timeout(engine):
    spec = {"nodes": [node("wait", handler="feat.aslow", timeout="0.1s",
                           retry={"max_attempts": 1}, config={"name": "wait"})]}
    error = failure(dag.start(spec))
    assert "TimeoutError: handler 'feat.aslow' did not finish within its 0.1s timeout" in (
        str(error)
    )
    assert log == ["wait cancelled"]


def test_a_fast_handler_with_a_timeout_and_foreach(engine):
    spec = {"nodes": [node("fan", foreach=[1, 2], timeout="5s",
                           config={"name": "n{{ item }}", "value": "{{ item }}"})]}
    assert dag.run(spec) == {"fan": [{"name": "n1", "value": 1}, {"name": "n2", "value": 2}]}


# -- on_failure: compensate ------------------------------------------------------------------


def undo(of: str, **config):
    return {"handler": "feat.echo", "config": {"name": f"undo-{of}", **config}}


SAGA = {
    "defaults": {"retry": {"max_attempts": 2, "initial_delay": 0}},
    "nodes": [
        node("account", config={"name": "account", "value": "{{ input.user }}"},
             compensate=undo("account", value="{{ account.output.value }}")),
        node("profile", deps=["account"], config={"name": "profile", "value": 7},
             compensate=undo("profile", value="{{ profile.output.value }}")),
        # same wave as `charge`, completes: undone first (it is the newest)
        node("email", deps=["account"], config={"name": "email"},
             compensate=undo("email", value="{{ account.output.name }}")),
        node("notes", deps=["account"], config={"name": "notes"}),  # nothing to undo
        node("charge", deps=["profile"], on_failure="compensate",
             config={"name": "charge", "fail": "{{ input.fail }}"}),
        node("ship", deps=["charge"], config={"name": "ship"},
             compensate=undo("ship")),
    ],
}


def test_a_compensating_failure_undoes_completed_nodes_newest_first(engine):
    run = dag.start(SAGA, {"user": "ada", "fail": True})
    error = failure(run)
    assert error.error_type.endswith("DagNodeFailed")
    assert error.error_message == "node 'charge' (handler 'feat.echo') failed: ValueError: " \
        "charge failed"
    undos = [name for name in log if name.startswith("undo-")]
    assert undos == ["undo-profile", "undo-email", "undo-account"]
    assert calls["charge"] == 2 and calls["ship"] == 0
    completed = [e for e in run.events() if e.kind == "step_completed"]
    # Each undo is a durable step named after its handler, recorded after the failing wave.
    prefixes = tuple(dag.node_prefixes(SAGA).values())
    undo_events = [e for e in completed if not e.op_id.startswith(prefixes)]
    assert len(undo_events) == 3 and {e.name for e in undo_events} == {"feat.echo"}


def test_a_template_error_in_a_compensating_node_still_undoes_what_completed(engine):
    nodes = [dict(n) for n in SAGA["nodes"]]
    charge = next(i for i, n in enumerate(nodes) if n["id"] == "charge")
    nodes[charge] = {**nodes[charge], "config": {"name": "{{ profile.output.nope.deeper }}"}}
    error = failure(dag.start({**SAGA, "nodes": nodes}, {"user": "ada"}))
    assert error.error_type.endswith("DagNodeFailed")
    assert error.error_message.startswith("node 'charge': ")
    assert "profile.output.nope" in error.error_message
    assert [n for n in log if n.startswith("undo-")] == [
        "undo-profile", "undo-email", "undo-account"
    ]
    assert calls["charge"] == 0


def test_undo_configs_see_the_nodes_outputs(engine):
    seen: list[dict] = []

    @dag.handler("feat.record")
    def record(**config):
        seen.append(config)
        return None

    spec = {
        "nodes": [
            node("a", config={"name": "a", "value": {"id": 41}},
                 compensate={"handler": "feat.record",
                             "config": {"id": "{{ a.output.value.id }}", "user": "{{ input }}"}}),
            node("b", deps=["a"], on_failure="compensate", config={"name": "b", "fail": True},
                 retry={"max_attempts": 1}),
        ],
    }
    failure(dag.start(spec, "ada"))
    assert seen == [{"id": 41, "user": "ada"}]


def test_without_a_failure_or_with_on_failure_fail_nothing_is_undone(engine):
    assert dag.run(SAGA, {"user": "ada", "fail": False}) == {
        "email": {"name": "email", "value": None},
        "notes": {"name": "notes", "value": None},
        "ship": {"name": "ship", "value": None},
    }
    assert not [n for n in log if n.startswith("undo-")]
    log.clear()
    spec = {**SAGA, "nodes": [{**n, "on_failure": "fail"} if n["id"] == "charge" else n
                              for n in SAGA["nodes"]]}
    failure(dag.start(spec, {"user": "ada", "fail": True}))
    assert not [n for n in log if n.startswith("undo-")]


def test_defaults_on_failure_compensate(engine):
    spec = {**SAGA, "defaults": {"on_failure": "compensate", "retry": {"max_attempts": 1}},
            "nodes": [{k: v for k, v in n.items() if k != "on_failure"} for n in SAGA["nodes"]]}
    failure(dag.start(spec, {"user": "ada", "fail": True}))
    assert [n for n in log if n.startswith("undo-")] == [
        "undo-profile", "undo-email", "undo-account"
    ]


def test_a_failing_undo_still_runs_the_others_and_is_reported(engine):
    nodes = [dict(n) for n in SAGA["nodes"]]
    nodes[1] = {**nodes[1], "compensate": undo("profile", fail=True)}
    spec = {**SAGA, "nodes": nodes}
    error = failure(dag.start(spec, {"user": "ada", "fail": True}))
    assert error.error_type.endswith("CompensationFailed")
    assert error.error_message == (
        "1 undo step failed while compensating for DagNodeFailed: node 'charge' (handler "
        "'feat.echo') failed: ValueError: charge failed: profile (feat.echo): ValueError: "
        "undo-profile failed"
    )
    assert calls["undo-profile"] == 2  # retried per defaults.retry
    assert [n for n in log if n.startswith("undo-") and n != "undo-profile"] == [
        "undo-email", "undo-account"
    ]


def test_cancelling_a_run_waiting_on_a_hook_undoes_its_completed_nodes(engine):
    engine.runtime.options.time_skipping = None
    spec = {
        "nodes": [
            node("account", config={"name": "account", "value": "{{ input.user }}"},
                 compensate=undo("account", value="{{ account.output.value }}")),
            node("profile", deps=["account"], config={"name": "profile"},
                 compensate=undo("profile")),
            node("verify", handler="hook", deps=["profile"],
                 config={"token": "verify-{{ input.user }}"}),
            node("activate", deps=["verify"], config={"name": "activate"}),
        ],
    }
    run = dag.start(spec, {"user": "ada"})
    wait_on_hook(run, engine.world)
    run.cancel()
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert [name for name in log if name.startswith("undo-")] == ["undo-profile", "undo-account"]
    assert calls["activate"] == 0


def test_a_cancelled_run_whose_undo_failed_says_so(engine):
    engine.runtime.options.time_skipping = None
    spec = {
        "nodes": [
            node("account", config={"name": "account"},
                 compensate={**undo("account", fail=True), "retry": {"max_attempts": 1}}),
            node("verify", handler="hook", deps=["account"], config={"token": "verify-undo"}),
        ],
    }
    run = dag.start(spec, {"user": "ada"})
    wait_on_hook(run, engine.world)
    run.cancel()
    with pytest.raises(WorkflowCancelled) as raised:
        run.result(timeout=10)
    assert raised.value.undo_failures == [
        "account (feat.echo): ValueError: undo-account failed"
    ]


_gate_entered = threading.Event()


@dag.handler("feat.gate")
def gate(name: str):
    with _lock:
        calls[name] += 1
        log.append(name)
    _gate_entered.set()
    assert _release.wait(10)
    return name


@pytest.mark.parametrize("how", HOW)
def test_a_cancel_while_the_last_node_runs_undoes_the_completed_nodes(engine, how):
    # No durable point follows the last node but the outcome: the run asks once whether it was
    # cancelled meanwhile, and undoes its nodes as any cancellation does.
    _gate_entered.clear()
    spec = {
        "nodes": [
            node("account", config={"name": "account", "value": "{{ input.user }}"},
                 compensate=undo("account", value="{{ account.output.value }}")),
            node("ship", handler="feat.gate", deps=["account"], config={"name": "ship"},
                 compensate=undo("ship")),
        ],
    }
    run = dag.start(spec, {"user": "ada"})
    cancel_while_held(run, engine.world, how, _gate_entered, _release)
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    assert calls["ship"] == 1
    assert [name for name in log if name.startswith("undo-")] == ["undo-ship", "undo-account"]


def test_inspect_shows_the_nodes_a_cancellation_kept_from_starting_as_skipped(engine):
    from cli._dag_view import child_records, dag_nodes
    from cli._timeline import build_timeline

    _gate_entered.clear()
    spec = {
        "nodes": [
            node("first", handler="feat.gate", config={"name": "first"}),
            node("second", deps=["first"], config={"name": "second"}),
        ],
    }
    run = dag.start(spec, {})
    cancel_while_held(run, engine.world, "elsewhere", _gate_entered, _release)
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=10)
    world = engine.world
    record = world.get_run(run.id)
    log = world.read_events(run.id)
    views = dag_nodes(
        record, log, build_timeline(record, log, world.now()), child_records(world, record, log)
    )
    by_id = {v.id: v for v in views}
    assert by_id["first"].status == "completed"
    assert (by_id["second"].status, by_id["second"].reason) == (
        "skipped", "the run was cancelled before it started"
    )
    assert calls["second"] == 0


def test_an_output_node_without_config_gathers_its_dependencies_outputs(engine):
    spec = {"nodes": [
        node("input", handler="input"),
        node("task-b", deps=["input"], config={"name": "b", "value": "{{ input.n }}"}),
        node("task_c", deps=["input"], config={"name": "c"}),
        node("output", handler="output", deps=["task-b", "task_c"]),
        node("only", handler="output", deps=["task_c"], config={}),
    ]}
    assert dag.run(spec, {"n": 7}) == {
        "output": {"task-b": {"name": "b", "value": 7}, "task_c": {"name": "c", "value": None}},
        "only": {"task_c": {"name": "c", "value": None}},
    }


def test_a_spec_may_nest_its_graph_under_dag(engine):
    spec = {"name": "Parallel Processing", "dag": {"nodes": [
        node("input", handler="input"),
        node("b", deps=["input"], config={"name": "b"}),
        node("output", handler="output", deps=["b"]),
    ]}}
    assert dag.validate(spec).name == "Parallel Processing"
    assert dag.run(spec, {}) == {"output": {"b": {"name": "b", "value": None}}}


_logged: dict[str, list[str]] = {}


@dag.handler("feat.log_so_far")
def log_so_far(name: str):
    import durable

    run_id = durable.step_info().run_id
    events = durable.get_runtime().world.read_events(run_id)
    _logged[name] = [e.name or "" for e in events if e.kind == "step_completed"]
    return name


def test_a_node_starts_once_its_dependencies_results_are_recorded(engine):
    # A DAG's nodes are branches of one group that wait on each other's results: a node's step
    # starts only once what it depends on is durable (a crash must not re-run a dependency
    # whose output the node already used).
    if engine.forced_replay:
        pytest.skip("forced replay writes every result at once")
    spec = {"nodes": [
        node("first", config={"name": "first"}),
        node("second", handler="feat.log_so_far", deps=["first"], config={"name": "second"}),
    ]}
    dag.run(spec, {})
    assert len(_logged["second"]) == 1  # first's step, recorded before second's started


def test_a_spec_timeout_cancels_a_run_still_unfinished_and_undoes_its_nodes(engine):
    spec = {"timeout": "1h", "nodes": [
        node("book", config={"name": "book"}, compensate=undo("book")),
        node("nap", handler="sleep", deps=["book"], config={"duration": "1 day"}),
        node("ship", deps=["nap"], config={"name": "ship"}),
    ]}
    run = dag.start(spec, {})
    with pytest.raises(WorkflowTimedOut) as timed_out:
        run.result(timeout=20)
    assert timed_out.value.deadline == pytest.approx(run.record.created_at + 3600, abs=1)
    assert log == ["book", "undo-book"]
    assert dag.validate({**spec, "timeout": "30m"}).timeout_seconds() == 1800
    with pytest.raises(dag.DagValidationError, match="timeout: .*must be more than 0 seconds"):
        dag.validate({**spec, "timeout": 0})
