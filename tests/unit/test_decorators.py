from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import pytest

import durable
from durable import ConfigurationError, InvalidDuration, RetryPolicy, step, workflow


def test_generator_functions_are_rejected_at_decoration():
    def numbers():
        yield 1

    with pytest.raises(ConfigurationError, match="generator function .*numbers.*Return a list"):
        step(numbers)
    with pytest.raises(ConfigurationError, match="generator"):
        workflow(numbers)


def test_async_generators_are_rejected():
    async def numbers():
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        step(numbers)


def test_lambda_workflow_needs_a_name():
    with pytest.raises(ConfigurationError, match="no stable name"):
        workflow(lambda: 1)
    assert workflow(name="named_lambda")(lambda: 1).name == "named_lambda"


def test_bare_and_configured_forms_keep_signature_and_docs():
    @step
    def plain(a: int, b: str = "x") -> str:
        """Docs survive."""
        return f"{a}{b}"

    @step(name="custom", retry=RetryPolicy(max_attempts=1))
    async def configured(a: int) -> int:
        return a

    assert plain.__doc__ == "Docs survive."
    assert str(inspect.signature(plain)) == "(a: 'int', b: 'str' = 'x') -> 'str'"
    assert configured.name == "custom"
    assert plain(1) == "1x"  # outside a workflow a step is a plain call


def test_duplicate_workflow_names_are_rejected():
    @workflow(name="dup_name")
    def first() -> None:
        pass

    with pytest.raises(ConfigurationError, match="two different workflows are named 'dup_name'"):

        @workflow(name="dup_name")
        def second() -> None:
            pass


def test_unknown_serializer_and_bad_timeout_are_rejected():
    with pytest.raises(ConfigurationError, match="unknown serializer 'xml'"):
        step(serializer="xml")(lambda: 1)
    with pytest.raises(InvalidDuration):

        @step(timeout="soon")
        def slow() -> None:
            pass


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number >= 1, got 0"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number >= 1, got 2.5"),
        ({"max_attempts": True}, "max_attempts must be a whole number >= 1, got True"),
        ({"initial_delay": float("nan")}, "initial_delay must be finite, got nan"),
        ({"max_delay": float("inf")}, "max_delay must be finite, got inf"),
        ({"backoff": "2"}, "backoff must be a number, got '2'"),
        ({"initial_delay": -1}, "delays must be >= 0 seconds"),
        ({"backoff": 0.5}, "backoff must be >= 1, got 0.5"),
    ],
)
def test_bad_retry_policy(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RetryPolicy(**fields)


def test_retry_delays_grow_and_are_capped():
    policy = RetryPolicy(initial_delay=1, backoff=2, max_delay=5, jitter=False)
    assert [policy.delay_before(n) for n in range(2, 7)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(initial_delay=4, jitter=True)
    assert all(2 <= jittered.delay_before(2) <= 4 for _ in range(50))


def test_step_info_outside_a_step_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="only available inside a @step"):
        durable.step_info()


def test_async_workflows_and_steps_are_coroutine_functions_to_inspect():
    import asyncio
    import inspect

    @workflow(name="coroutine_check")
    async def flow(x: int, y: int = 2) -> int:
        return x + y

    @step
    async def async_step() -> None:
        pass

    @step
    def sync_step() -> None:
        pass

    assert inspect.iscoroutinefunction(flow) and asyncio.iscoroutinefunction(flow)
    assert inspect.iscoroutinefunction(async_step)
    assert not inspect.iscoroutinefunction(sync_step)
    assert list(inspect.signature(flow).parameters) == ["x", "y"]


def _adder(k: int):
    @workflow
    def made(x: int) -> int:
        return x + k

    return made


def test_a_factory_cannot_make_two_live_workflows_under_one_name():
    from durable.testing import world

    five = _adder(5)
    with pytest.raises(ConfigurationError, match=r"defined twice by the same code.*still in use"):
        _adder(6)
    with world():
        assert five(1) == 6  # not the rejected closure's 7


def test_a_factory_gives_its_workflows_distinct_names():
    from durable.testing import world

    def adder(k: int):
        @workflow(name=f"adder-{k}")
        def made(x: int) -> int:
            return x + k

        return made

    five, six = adder(5), adder(6)
    with world():
        assert five.start(1).result(timeout=10) == 6
        assert six.start(1).result(timeout=10) == 7


def test_a_definition_made_again_after_the_first_is_gone_replaces_it():
    # What a test defining a workflow in its body does each time it runs.
    from durable.testing import world

    with world():
        for k in range(3):
            assert _adder(10 * k).with_options(run_id=f"again-{k}").start(1).result(
                timeout=10
            ) == 10 * k + 1


def test_a_definition_made_again_with_the_same_closure_is_accepted():
    def same(k: int):
        @workflow
        def constant() -> int:
            return k

        return constant

    first, second = same(1), same(1)  # both run the same code on the same values
    assert first.definition.fn is not second.definition.fn


def test_an_old_child_held_only_by_its_old_parent_does_not_block_and_cannot_run():
    from durable.testing import world

    def define(k: int):
        @workflow
        def child(x: int) -> int:
            return x + k

        @workflow
        def parent(x: int) -> int:
            return child(x)

        return parent, child

    old_parent, old_child = define(1)
    del old_parent  # held now only by the registry, as a finished test leaves it
    with pytest.raises(ConfigurationError, match=r"defined again.*can no longer run"):
        # old_child is held here, but also by the old parent, so defining it again passes.
        new_parent, _ = define(2)
        with world():
            assert new_parent(1) == 3
            old_child(1)


def test_a_module_imported_twice_defines_its_workflows_once():
    # As __main__ and by module name, or reloaded: two code objects from one file and line.
    from durable._decorators import lookup_workflow

    source = "from durable import workflow\n@workflow\ndef imported_twice(x: int) -> int:\n"
    source += "    return x\n"
    by_name: dict[str, Any] = {"__name__": "imported_twice_module"}
    as_main: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "imported_twice_module.py", "exec"), by_name)
    exec(compile(source, "imported_twice_module.py", "exec"), as_main)
    assert lookup_workflow("imported_twice") is as_main["imported_twice"].definition


class _Service:
    @staticmethod
    @workflow(name="service_static")
    def static(x: int) -> int:
        return x * 2


def test_workflow_methods_are_rejected_at_decoration():
    with pytest.raises(
        ConfigurationError,
        match=r"cannot decorate method '.*Svc.run'.*its input alone.*module-level function",
    ):

        class Svc:
            @workflow
            def run(self, x: int) -> int:
                return x

    with pytest.raises(ConfigurationError, match=r"cannot decorate method '.*Maker.build'"):

        class Maker:
            @classmethod
            @workflow
            def build(cls, x: int) -> int:
                return x


def test_static_workflow_methods_work():
    from durable.testing import world

    with world():
        assert _Service.static(2) == 4
        assert _Service().static.start(3).result(timeout=10) == 6


def test_a_workflow_called_like_a_method_says_it_cannot_be_one():
    def run(self, x: int) -> int:
        return x

    class Svc:
        pass

    Svc.run = workflow(name="attached_later")(run)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"missing a required argument: 'x'\. A workflow is not a "
                       r"method.*module-level function"):
        Svc().run(1)  # type: ignore[attr-defined]


@step
def _increment(x: int) -> int:
    return x + 1


@step
async def _async_increment(x: int) -> int:
    return x + 1


@workflow
async def _awaits_a_sync_step(x: int) -> list[int]:
    typed = await _increment.run_async(x)
    untyped = await _increment(x)  # the same at run time
    both = await asyncio.gather(_increment.run_async(1), _async_increment(2))
    return [typed, untyped, *both]


@workflow
def _sync_flow_using_run_async(x: int) -> int:
    return asyncio.run(_increment.run_async(x))


def test_run_async_awaits_a_sync_step_in_an_async_workflow():
    from durable.testing import world

    with world():
        run = _awaits_a_sync_step.start(1)
        assert run.result(timeout=10) == [2, 2, 2, 3]
        assert [e.name for e in run.events() if e.kind == "step_completed"].count(
            _increment.name
        ) == 3


def test_run_async_outside_a_workflow_is_a_plain_call_and_refuses_misuse():
    assert asyncio.run(_increment.run_async(1)) == 2
    with pytest.raises(TypeError, match=r"async def: await the call itself"):
        _async_increment.run_async(1)
    from durable.testing import world

    with world(), pytest.raises(
        durable.WorkflowFailed, match=r"TypeError: .*run_async\(\.\.\.\) is for async workflows"
    ):
        _sync_flow_using_run_async(1)


def test_a_retry_that_is_not_a_policy_is_refused_at_decoration():
    with pytest.raises(ConfigurationError, match=r"retry must be a RetryPolicy, got 3: .*"
                       r"retry=RetryPolicy\(max_attempts=3\)"):
        step(retry=3)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"got \{'max_attempts': 2\}"):
        @step(retry={"max_attempts": 2})  # type: ignore[arg-type]
        def charge() -> None: ...
