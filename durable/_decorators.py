"""The ``@workflow`` and ``@step`` decorators."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from durable._context import current_frame
from durable._durations import parse_duration
from durable._errors import ConfigurationError, InvalidDuration
from durable._options import RetryPolicy
from durable._steps import call_step
from durable.world import check_key

if TYPE_CHECKING:
    from durable._run import Run

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")

_SERIALIZERS = ("json", "pickle")


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """A registered step: the function and how it runs."""

    fn: Callable[..., Any]
    name: str
    retry: RetryPolicy
    timeout: float | None
    serializer: str
    is_async: bool

    def timed_out(self) -> TimeoutError:
        """The error of an attempt that ran past :attr:`timeout`."""
        return TimeoutError(
            f"step {self.name!r} did not finish within its {self.timeout:g}s timeout"
        )


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A registered workflow."""

    fn: Callable[..., Any]
    name: str
    serializer: str
    is_async: bool
    signature: inspect.Signature | None = field(default=None, compare=False, repr=False)

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` now, before anything is recorded, if the call cannot bind."""
        if self.signature is None:
            return
        if not kwargs:
            arity = _positional_arity(self.signature)
            if arity is not None and arity[0] <= len(args) <= arity[1]:
                return  # binds: the common call, without Signature.bind's cost
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            hint = ""
            if _first_parameter(self.signature) in ("self", "cls"):
                hint = f". {_NOT_A_METHOD}"
            why = unexpected_keywords(self.signature, kwargs) or exc
            raise TypeError(
                f"workflow {self.name!r} called with arguments that do not match "
                f"{self.fn.__name__}{self.signature}: {why}{hint}"
            ) from None


@functools.lru_cache(maxsize=1024)
def _positional_arity(signature: inspect.Signature) -> tuple[int, int] | None:
    """How many positional arguments bind, for a signature of plain parameters only."""
    parameters = signature.parameters.values()
    if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in parameters):
        return None
    required = sum(1 for p in parameters if p.default is p.empty)
    return required, len(signature.parameters)


def unexpected_keywords(signature: inspect.Signature, kwargs: dict[str, Any]) -> str | None:
    """The keyword arguments no parameter takes, if any, said as the reason a call cannot bind.

    ``bind`` names only the parameter they leave missing: a misspelt ``request=`` for ``req``
    reads "missing a required argument: 'req'".
    """
    params = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    unknown = [k for k in kwargs if k not in params or params[k].kind is params[k].POSITIONAL_ONLY]
    if not unknown:
        return None
    names = ", ".join(repr(k) for k in unknown)
    return f"no parameter takes the keyword argument{'s' if len(unknown) > 1 else ''} {names}"


_NOT_A_METHOD = (
    "A workflow is not a method: a worker re-creates a run from the workflow's name and its "
    "input alone, with no instance to call it on. Define it as a module-level function (or a "
    "@staticmethod) that takes what it needs as arguments"
)


def _first_parameter(signature: inspect.Signature) -> str | None:
    return next(iter(signature.parameters), None)


def _check_not_a_method(fn: Callable[..., Any], signature: inspect.Signature | None) -> None:
    # "Svc.run" names a function defined in a class body ("f.<locals>.run" one in a function);
    # a staticmethod's function is defined there too, but takes no self or cls.
    parts = getattr(fn, "__qualname__", "").split(".")
    in_class = len(parts) >= 2 and parts[-2] != "<locals>"
    if in_class and signature is not None and _first_parameter(signature) in ("self", "cls"):
        raise ConfigurationError(
            f"@workflow cannot decorate method {fn.__qualname__!r}. {_NOT_A_METHOD}"
        )


@dataclass(frozen=True, slots=True)
class StartOptions:
    """Per-start options set with :meth:`Workflow.with_options`."""

    run_id: str | None = None
    """A caller-chosen run id: starting twice with one id returns the existing run."""
    execute: bool | None = None
    """Execute the run in this process; False leaves it to other workers. ``None``: here if
    this process runs its embedded worker (``durable.configure(worker=False)`` says it does not)."""
    timeout: float | None = None
    """Seconds from the start after which an unfinished run is cancelled (``WorkflowTimedOut``)."""


_registry: dict[str, WorkflowDefinition] = {}
_registry_lock = threading.Lock()
# For each registered name, the objects @workflow and with_options made for it, held weakly:
# a definition made again by the same code can then tell a test that runs again (the old object
# is gone) from a factory whose results are all in use.
_made: dict[str, tuple[WorkflowDefinition, weakref.WeakSet[Workflow[..., Any]]]] = {}


def registered_workflows() -> dict[str, WorkflowDefinition]:
    """A snapshot of every workflow registered in this process, by name."""
    with _registry_lock:
        return dict(_registry)


def lookup_workflow(name: str) -> WorkflowDefinition | None:
    """The workflow registered under ``name``, if any."""
    return _registry.get(name)


def swap_code(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Execute the workflow ``name``'s runs with ``fn`` from now on; returns the code it had.

    For ``durable.testing.deploy``: the runs recorded so far then replay under the new code.
    """
    with _registry_lock:
        current = _registry.get(name)
        if current is None:
            raise ConfigurationError(f"no workflow named {name!r} is registered")
        _registry[name] = replace(
            current, fn=fn, is_async=inspect.iscoroutinefunction(fn), signature=_signature(fn)
        )
        return current.fn


def _register(defn: WorkflowDefinition) -> None:
    with _registry_lock:
        existing = _registry.get(defn.name)
        if existing is not None and not _same_source(existing.fn, defn.fn):
            raise ConfigurationError(
                f"two different workflows are named {defn.name!r} "
                f"({_where(existing.fn)} and {_where(defn.fn)}): give one a distinct name "
                "with @workflow(name=...)"
            )
        if existing is not None and _remade(existing, defn) and _still_used(existing):
            raise ConfigurationError(
                f"workflow {defn.name!r} ({_where(defn.fn)}) was defined twice by the same code "
                "with different closure variables or defaults, and the first is still in use. "
                "Runs find their code by name alone, so both would run the second one. "
                + _give_distinct_names(defn.fn)
            )
        _registry[defn.name] = defn
        _made[defn.name] = (defn, weakref.WeakSet())


def _give_distinct_names(fn: Callable[..., Any]) -> str:
    short = getattr(fn, "__name__", "workflow")
    return (
        f'Give each a distinct name (e.g. @workflow(name=f"{short}-{{key}}")) or define the '
        "workflow at module level and pass what differs as an argument"
    )


def _track(made: Workflow[..., Any]) -> None:
    with _registry_lock:
        entry = _made.get(made.name)
        if entry is not None and entry[0] is made.definition:
            entry[1].add(made)


def _same_source(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # The same file imported twice (as __main__ and by module name) defines equal workflows.
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return code_a is not None and code_b is not None and (
        code_a.co_filename,
        code_a.co_firstlineno,
    ) == (code_b.co_filename, code_b.co_firstlineno)


def _remade(old: WorkflowDefinition, new: WorkflowDefinition) -> bool:
    """Whether ``new`` is the same ``def`` run again (a factory, a loop) to different effect.

    A module imported twice compiles its code twice, so one code object means one ``def``
    statement executed again in this process; it only matters if what the body sees differs.
    """
    code = getattr(old.fn, "__code__", None)
    if code is None or code is not getattr(new.fn, "__code__", None):
        return False
    old_cells = getattr(old.fn, "__closure__", None) or ()
    new_cells = getattr(new.fn, "__closure__", None) or ()
    return (
        any(_differ(_cell(a), _cell(b)) for a, b in zip(old_cells, new_cells, strict=True))
        or _differ(getattr(old.fn, "__defaults__", None), getattr(new.fn, "__defaults__", None))
        or _differ(getattr(old.fn, "__kwdefaults__", None), getattr(new.fn, "__kwdefaults__", None))
    )


_EMPTY = object()


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet: a workflow that refers to itself, or to a later name
        return _EMPTY


def _differ(a: Any, b: Any) -> bool:
    if a is b or a is _EMPTY or b is _EMPTY:  # an unassigned cell cannot tell them apart
        return False
    try:
        return bool(a != b)
    except Exception:  # an __eq__ that refuses (arrays, say): different objects then
        return True


def _still_used(defn: WorkflowDefinition) -> bool:
    """Whether an object made for ``defn`` by @workflow or with_options is still alive.

    Those held by another registered workflow's closure do not count: a test that defines a
    parent and its child inside the test function leaves the old child held by the old parent,
    which the registry keeps, and running that test again must not fail.
    """
    entry = _made.get(defn.name)
    if entry is None or entry[0] is not defn:
        return False
    held = {
        id(_cell(cell))
        for other in _registry.values()
        for cell in getattr(other.fn, "__closure__", None) or ()
    }
    return any(id(made) not in held for made in entry[1])


def _superseded(defn: WorkflowDefinition) -> WorkflowDefinition | None:
    """The definition that replaced ``defn`` under its name, if the same code remade it."""
    current = _registry.get(defn.name)
    if current is None or current is defn or not _remade(defn, current):
        return None
    return current


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def _wrap(wrapper: Callable[..., Any], fn: Callable[..., Any], is_async: bool) -> None:
    """Make ``wrapper`` look like ``fn``; for ``async def`` also to ``iscoroutinefunction``.

    Frameworks that treat coroutine functions differently ask ``inspect.iscoroutinefunction``,
    which (before Python 3.12's marker) reads the flags of a function-like object's code.
    """
    functools.update_wrapper(wrapper, fn)
    if is_async:
        for name in ("__code__", "__defaults__", "__kwdefaults__"):
            setattr(wrapper, name, getattr(fn, name, None))
        mark = getattr(inspect, "markcoroutinefunction", None)
        if mark is not None:
            mark(wrapper)


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some callables (builtins) have none: calls are not checked
        return None


def _validate(fn: Any, kind: str) -> bool:
    if not callable(fn) or inspect.isclass(fn):
        raise ConfigurationError(f"@{kind} decorates a function, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"@{kind} cannot decorate generator function {fn.__qualname__!r}: its body would "
            "not run until iterated. Return a list instead of yielding values."
        )
    return inspect.iscoroutinefunction(fn)


def _check_serializer(serializer: str, name: str) -> None:
    if serializer not in _SERIALIZERS:
        raise ConfigurationError(
            f"{name!r}: unknown serializer {serializer!r}; use 'json' (default) or 'pickle'"
        )


class Step(Generic[P, R]):
    """A function decorated with ``@step``: durable inside workflows, plain outside."""

    def __init__(self, definition: StepDefinition) -> None:
        self.definition = definition
        _wrap(self, definition.fn, definition.is_async)

    @property
    def name(self) -> str:
        """The step's registered name."""
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = call_step(self.definition, args, kwargs)
        return result

    # Coroutine[object, None, R], not [Any, Any, R]: an Any there makes a type checker give up
    # on overloads that tell async callables from plain ones (durable.map, durable.parallel).
    def run_async(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[object, None, R]:
        """Call a sync step from an async workflow: ``x = await my_step.run_async(1)``.

        ``await my_step(1)`` does the same at run time, but a type checker reads ``my_step(1)``
        as the function's return type, which cannot be awaited: Python's typing has no way to
        say "the result in sync workflows, an awaitable in async ones". Outside a workflow the
        step runs when awaited, as a plain call.
        """
        if self.definition.is_async:
            raise TypeError(
                f"step {self.name!r} is an async def: await the call itself, "
                f"await {self.definition.fn.__name__}(...), rather than .run_async(...)"
            )
        frame = current_frame.get()
        if frame is None:
            return _plain_call(self.definition.fn, args, kwargs)
        if not frame.ctx.is_async:
            raise TypeError(
                f"step {self.name!r}: .run_async(...) is for async workflows, and this workflow "
                f"is a def; call the step directly, {self.definition.fn.__name__}(...)"
            )
        call: Coroutine[object, None, R] = call_step(self.definition, args, kwargs)
        return call

    @overload
    def __get__(self, obj: None, objtype: type[Any] | None = None) -> Step[P, R]: ...

    @overload
    def __get__(
        self: Step[Concatenate[S, Q], R], obj: S, objtype: type[Any] | None = None
    ) -> Callable[Q, R]: ...

    def __get__(self, obj: Any, objtype: type[Any] | None = None) -> Any:
        # A step defined in a class body, read from an instance: the instance is its first
        # argument, as for a method (and is part of what the step is called with).
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __repr__(self) -> str:
        return f"<step {self.definition.name}>"


async def _plain_call(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    return fn(*args, **kwargs)


class Workflow(Generic[P, R]):
    """A function decorated with ``@workflow``.

    Calling it outside a workflow runs it durably to completion and returns its result (await it
    for ``async def`` workflows). :meth:`start` records a run and returns a :class:`Run` at once.
    """

    def __init__(self, definition: WorkflowDefinition, options: StartOptions | None = None):
        self.definition = definition
        self.options = options or StartOptions()
        _wrap(self, definition.fn, definition.is_async)

    @property
    def name(self) -> str:
        """The workflow's registered name (recorded in every run)."""
        return self.definition.name

    def with_options(
        self,
        *,
        run_id: str | None = None,
        execute: bool | None = None,
        timeout: float | timedelta | str | None = None,
    ) -> Workflow[P, R]:
        """A copy of this workflow that starts runs with these options.

        Args:
            run_id: the id of the run to start; starting an existing id returns that run.
            execute: run it in this process or leave it to other workers (default: here,
                unless ``durable.configure(worker=False)`` turned this process's worker off).
            timeout: how long the run may take from its start (seconds, a timedelta, or a
                string like ``"30m"``). A run still unfinished then is cancelled at its next
                durable point (a sleep or hook wait ends early for it; a step in flight ends
                first), its saga undos run, and its result raises ``WorkflowTimedOut``. Its
                child runs are cancelled with it.

        Raises:
            InvalidDuration: ``timeout`` is not a positive duration.
        """
        changes: dict[str, Any] = {}
        if timeout is not None:
            seconds = parse_duration(timeout)
            if seconds <= 0:
                raise InvalidDuration(
                    f"timeout must be positive, got {timeout!r}: how long the run may take "
                    "from its start, e.g. 30, \"30m\" or timedelta(hours=1)"
                )
            changes["timeout"] = seconds
        if run_id is not None:
            check_key(run_id, "run_id")
            changes["run_id"] = run_id
        if execute is not None:
            changes["execute"] = execute
        copy: Workflow[P, R] = Workflow(self.definition, replace(self.options, **changes))
        _track(copy)
        return copy

    @overload
    def start(  # an async workflow's Run holds what its coroutine returns
        self: Workflow[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Run[T]: ...

    @overload
    def start(self: Workflow[P, T], *args: P.args, **kwargs: P.kwargs) -> Run[T]: ...

    def start(self, *args: P.args, **kwargs: P.kwargs) -> Run[Any]:
        """Record a new run of this workflow and return its handle without waiting."""
        from durable._client import get_runtime

        self._check_current()
        self.definition.check_arguments(args, kwargs)
        return get_runtime().start(self.definition, args, kwargs, self.options)

    @overload
    async def start_async(  # an async workflow's Run holds what its coroutine returns
        self: Workflow[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Run[T]: ...

    @overload
    async def start_async(self: Workflow[P, T], *args: P.args, **kwargs: P.kwargs) -> Run[T]: ...

    async def start_async(self, *args: P.args, **kwargs: P.kwargs) -> Run[Any]:
        """:meth:`start` for async code: the run is recorded on a thread, not the event loop.

        An async web handler awaits this rather than blocking its loop while the world is
        written (a busy SQLite file, a round trip to AWS). In workflow code it is ``start``.
        """
        if current_frame.get() is not None:
            return self.start(*args, **kwargs)  # a child run: recorded by the engine, here
        return await asyncio.to_thread(self.start, *args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        from durable._client import get_runtime

        self._check_current()
        self.definition.check_arguments(args, kwargs)
        result: R = get_runtime().call(self.definition, args, kwargs, self.options)
        return result

    def _check_current(self) -> None:
        # A run records only the name: if the same def was made again since, a run started
        # from this object would execute the newer one's code.
        newer = _superseded(self.definition)
        if newer is not None:
            raise ConfigurationError(
                f"workflow {self.name!r} ({_where(self.definition.fn)}) was defined again by the "
                "same code with different closure variables or defaults, and runs find their "
                "code by name, so this earlier one can no longer run. "
                + _give_distinct_names(self.definition.fn)
            )

    def __repr__(self) -> str:
        return f"<workflow {self.definition.name}>"


@overload
def workflow(fn: Callable[P, R], /) -> Workflow[P, R]: ...


@overload
def workflow(
    *, name: str | None = None, serializer: str = "json"
) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    serializer: str = "json",
) -> Workflow[P, R] | Callable[[Callable[P, R]], Workflow[P, R]]:
    """Make a function a durable workflow. Use bare (``@workflow``) or with options.

    Args:
        fn: the workflow function (``def`` or ``async def``).
        name: the name recorded in runs; defaults to the function's qualified name. Keep it
            stable: runs in flight find their code by it.
        serializer: ``"json"`` (default) or ``"pickle"`` for the run's input and result.
    """

    def decorate(func: Callable[P, R]) -> Workflow[P, R]:
        is_async = _validate(func, "workflow")
        wf_name = name or func.__qualname__
        if name is None and "<lambda>" in wf_name:
            raise ConfigurationError(
                f"workflow {wf_name!r} has no stable name: define it at module level or pass "
                "@workflow(name=...)"
            )
        _check_serializer(serializer, wf_name)
        signature = _signature(func)
        _check_not_a_method(func, signature)
        definition = WorkflowDefinition(func, wf_name, serializer, is_async, signature)
        _register(definition)
        made: Workflow[P, R] = Workflow(definition)
        _track(made)
        return made

    return decorate(fn) if fn is not None else decorate


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | str | timedelta | None = None,
    serializer: str = "json",
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | str | timedelta | None = None,
    serializer: str = "json",
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a durable step: its result is recorded once and replayed afterwards.

    Args:
        fn: the step function (``def`` or ``async def``).
        name: the name recorded in the log; defaults to the function's qualified name.
        retry: the retry policy; steps retry with ``RetryPolicy()`` defaults unless told.
        timeout: a limit for each attempt (seconds, a ``timedelta`` or a duration string such
            as ``"30s"``); an attempt that exceeds it fails with ``TimeoutError`` and is
            retried. An ``async def`` step is cancelled; a ``def`` step runs in a thread of its
            own, which cannot be interrupted, so an attempt that runs out is left to finish in
            the background and its result is ignored.
        serializer: ``"json"`` (default) or ``"pickle"`` for the step's result.
    """

    def decorate(func: Callable[P, R]) -> Step[P, R]:
        is_async = _validate(func, "step")
        step_name = name or func.__qualname__
        _check_serializer(serializer, step_name)
        if retry is not None and not isinstance(retry, RetryPolicy):
            hint = f"max_attempts={retry}" if type(retry) is int else "max_attempts=..., ..."
            raise ConfigurationError(
                f"step {step_name!r}: retry must be a RetryPolicy, got {retry!r}: write "
                f"retry=RetryPolicy({hint})"
            )
        limit = parse_duration(timeout) if timeout is not None else None
        definition = StepDefinition(
            func, step_name, retry or RetryPolicy(), limit, serializer, is_async
        )
        return Step(definition)

    return decorate(fn) if fn is not None else decorate

