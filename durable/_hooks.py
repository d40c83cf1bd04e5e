"""Hooks: a workflow waits for a payload that an outside system delivers with a token."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import timedelta
from typing import Any, Generic, Protocol, Self, TypeVar, overload

from durable._context import current_frame, current_step
from durable._durations import parse_duration
from durable._engine import RunContext
from durable._errors import ConfigurationError, HookNotFound, HookTimeout, PayloadInvalid
from durable._serialization import dumps, importable_path, loads, module_named
from durable.world import HookRecord, NewEvent, World, check_key

T = TypeVar("T")

_WAITING = object()
"""What :meth:`Hook._look` returns while no payload has come."""
_ENDED = object()
"""What it returns once the hook was disposed."""


class PayloadModel(Protocol):
    """A pydantic model class (anything with ``model_validate``), for ``create_hook(model=...)``."""

    @classmethod
    def model_validate(cls, obj: Any, /) -> Self: ...


M = TypeVar("M", bound=PayloadModel)


class Hook(Generic[T]):
    """A token a run waits on. Create it with :func:`create_hook` inside a workflow.

    ``hook.wait()`` (sync workflows) or ``await hook`` (async) returns the next payload;
    ``for payload in hook:`` / ``async for`` receives payloads until the hook is disposed.
    """

    def __init__(
        self,
        ctx: RunContext,
        op_id: str,
        token: str,
        timeout_at: float | None,
        model: type[PayloadModel] | None,
    ) -> None:
        self._ctx = ctx
        self._op_id = op_id
        self.token = token
        """Give this to the outside system; it calls ``resume_hook(token, payload)``."""
        self.timeout_at = timeout_at
        """When waiting stops with :class:`~durable.HookTimeout` (epoch seconds), if ever."""
        self._model = model

    def __repr__(self) -> str:
        return f"<Hook {self.token}>"

    def _next(self) -> T:
        """The next payload; raises StopIteration once the hook was disposed."""
        ctx = self._ctx
        ctx.stopped_here()
        since = time.monotonic()
        while True:
            seen = ctx.seen_now()
            value = self._look()
            if value is _ENDED:
                raise StopIteration
            if value is not _WAITING:
                return value  # type: ignore[no-any-return]
            if ctx.linger(self.timeout_at, since):  # other branches still work: wait beside them
                continue
            raise ctx.suspend_for_outside(seen, self.timeout_at, f"waiting for hook {self.token!r}")

    async def _next_async(self) -> Any:
        """:meth:`_next` in an async run: the next payload, or ``_ENDED``."""
        ctx = self._ctx
        ctx.stopped_here()
        since = time.monotonic()
        while True:
            seen = ctx.seen_now()
            value = self._look()
            if value is not _WAITING:
                return value
            if await ctx.linger_async(self.timeout_at, since):  # beside a step under way
                continue
            raise ctx.suspend_for_outside(seen, self.timeout_at, f"waiting for hook {self.token!r}")

    def _look(self) -> Any:
        """The next payload (taken), ``_ENDED``, or ``_WAITING`` (nothing yet: wait or suspend).

        Raises:
            HookTimeout: the hook timed out.
        """
        ctx = self._ctx
        index = ctx.hook_cursor.get(self._op_id, 0)
        while True:
            payloads = ctx.hook_payloads.get(self._op_id, [])
            if index < len(payloads):
                ctx.hook_cursor[self._op_id] = index + 1
                return self._decode(payloads[index].data)
            ended = ctx.hook_ends.get(self._op_id)
            if ended is not None:
                if ended.kind == "hook_timed_out":
                    raise HookTimeout(self.token)
                return _ENDED
            if ctx.refresh():
                continue
            if self._time_out():
                raise HookTimeout(self.token)
            ctx.check_cancel()
            return _WAITING

    def _time_out(self) -> bool:
        ctx = self._ctx
        if ctx.recorder is None or self.timeout_at is None or ctx.clock() < self.timeout_at:
            return False
        event = NewEvent("hook_timed_out", self._op_id, "hook")
        recorder = ctx.recorder
        if not ctx.write_directly(
            lambda: recorder.dispose_hook(self.token, event, ctx.expected_seq)
        ):
            return False  # something arrived meanwhile: look again before giving up
        ctx.hook_ends[self._op_id] = _ended(ctx, self._op_id)
        return True

    def _decode(self, data: bytes | None) -> T:
        value: Any = loads(data) if data is not None else None
        if self._model is not None:
            value = self._model.model_validate(value)
        return value  # type: ignore[no-any-return]

    def wait(self) -> T:
        """Suspend until a payload arrives and return it (sync workflows).

        Raises:
            HookTimeout: the hook's timeout passed first.
        """
        try:
            return self._next()
        except StopIteration:
            raise HookNotFound(self.token) from None

    def __await__(self) -> Generator[Any, None, T]:
        return _wait_async(self).__await__()

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self._next()
            except StopIteration:
                return

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            value = await self._next_async()
            if value is _ENDED:
                return
            yield value

    def dispose(self) -> None:
        """Stop receiving: later ``resume_hook`` calls with this token raise HookNotFound."""
        ctx = self._ctx
        if self._op_id in ctx.hook_ends:
            return
        recorder = ctx.recorder
        if recorder is not None:
            event = NewEvent("hook_disposed", self._op_id, "hook")
            ctx.write_directly(lambda: recorder.dispose_hook(self.token, event, None))
        ctx.hook_ends[self._op_id] = _ended(ctx, self._op_id, "hook_disposed")


async def _wait_async(hook: Hook[T]) -> T:
    value = await hook._next_async()
    if value is _ENDED:
        raise HookNotFound(hook.token)
    return value  # type: ignore[no-any-return]


def _ended(ctx: RunContext, op_id: str, kind: str = "hook_timed_out") -> Any:
    from durable.world import Event

    return Event(ctx.run_id, 0, kind, op_id, "hook", None, ctx.clock())


@overload
def create_hook(
    token: str | None = None,
    timeout: float | str | timedelta | None = None,
    *,
    model: type[M],
) -> Hook[M]: ...


@overload
def create_hook(
    token: str | None, timeout: float | str | timedelta | None, model: type[M]
) -> Hook[M]: ...


@overload
def create_hook(
    token: str | None = None,
    timeout: float | str | timedelta | None = None,
    model: None = None,
) -> Hook[Any]: ...


def create_hook(
    token: str | None = None,
    timeout: float | str | timedelta | None = None,
    model: type[PayloadModel] | None = None,
) -> Hook[Any]:
    """Create a hook the current run can wait on.

    Args:
        token: a caller-chosen token (e.g. ``"email-verified:42"``), unique among live hooks;
            default: a random token with 128 bits of entropy.
        timeout: how long waits may take (seconds, ``timedelta`` or ``"24h"``); then the wait
            raises :class:`~durable.HookTimeout`. Default: no limit.
        model: a pydantic model class; payloads are validated into it when received, and
            ``wait()`` (or ``await hook``) returns an instance of it. Without one a payload
            comes back as recorded (JSON-like values: dicts, lists, str, numbers, ...).

    Raises:
        HookConflict: a live hook already holds ``token``.
    """
    frame = current_frame.get()
    if frame is None:
        info = current_step.get()
        where = f", not inside a step (here: step {info.name!r})" if info else ""
        raise ConfigurationError(
            f"create_hook() is only available in workflow code{where}: create the hook in the "
            "workflow and pass its token to the step"
        )
    ctx = frame.ctx
    op_id = frame.branch.next_op()
    event = ctx.lookup(op_id, "hook", "hook")
    if event is not None:
        info = json.loads(event.data or b"{}")
        return Hook(ctx, op_id, info["token"], info.get("timeout_at"), model)
    if token is not None:
        check_key(token, "hook token")
    ctx.check_cancel()
    chosen = token if token is not None else f"hook_{secrets.token_urlsafe(16)}"
    timeout_at = ctx.clock() + parse_duration(timeout) if timeout is not None else None
    if timeout_at is not None:
        ctx.check_wait(timeout_at, f"create_hook(timeout={timeout!r})")
    schema = importable_path(model) if model is not None else None
    data = json.dumps({"token": chosen, "timeout_at": timeout_at, "schema": schema}).encode()
    record = HookRecord(chosen, ctx.run_id, op_id, ctx.clock(), timeout_at, schema)
    recorder = ctx.recorder
    if recorder is None:
        raise ctx.block()
    ctx.write_directly(
        lambda: recorder.create_hook(record, NewEvent("hook_created", op_id, "hook", data))
    )
    ctx.recorded[op_id] = _created(ctx, op_id, data)
    return Hook(ctx, op_id, chosen, timeout_at, model)


def _created(ctx: RunContext, op_id: str, data: bytes) -> Any:
    from durable.world import Event

    return Event(ctx.run_id, 0, "hook_created", op_id, "hook", data, ctx.clock())


def resume_hook(token: str, payload: Any = None) -> str:
    """Deliver a payload to the run waiting on ``token``, from any process. Returns the run id.

    A payload delivered before the workflow reaches its wait is kept until it does. The run
    goes on in this process's embedded worker (started if need be), unless
    ``configure(worker=False)`` turned it off: then another worker takes it.

    Raises:
        HookNotFound: no live hook has this token.
        SerializationError: the payload cannot be recorded.
    """
    from durable._client import get_runtime

    runtime = get_runtime()
    data = encode_payload(runtime.world, token, payload)
    hook = runtime.world.resume_hook(token, data)
    # The run is due now: executed here unless this process has no worker (in a freshly
    # started web app, the webhook may be the first thing that touches durable).
    runtime.ensure_worker()
    runtime.wake()
    return hook.run_id


async def resume_hook_async(token: str, payload: Any = None) -> str:
    """:func:`resume_hook` for async code: the world is written on a thread, not the loop.

    A webhook handler in an async app awaits this rather than blocking its event loop (a busy
    SQLite file, or a round trip to AWS) while the payload is recorded.
    """
    return await asyncio.to_thread(resume_hook, token, payload)


def encode_payload(world: World, token: str, payload: Any) -> bytes:
    """Serialize a payload for a hook, validating it first against the hook's pydantic model.

    Raises:
        HookNotFound: no live hook has this token.
        PayloadInvalid: the payload does not fit the hook's model (nothing is delivered).
    """
    hook = world.get_hook(token)
    if hook is None:
        raise HookNotFound(token)
    if hook.timed_out(world.now()):
        raise HookNotFound(token, hook.timeout_at)
    if hook.schema is not None:
        model = _import_model(hook.schema, token)
        try:
            payload = model.model_validate(payload).model_dump(mode="json")
        except Exception as exc:  # pydantic.ValidationError, without importing pydantic
            raise PayloadInvalid(token, hook.schema, exc) from exc
    return dumps(payload, what=f"payload for hook {token!r}")


def _import_model(path: str, token: str) -> Any:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = module_named(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        # Delivered unchecked, a payload that does not fit would fail the run instead.
        raise ConfigurationError(
            f"cannot check the payload for hook {token!r} against its model {path} here "
            f"({type(exc).__name__}: {exc}): resume it where the workflow's modules import "
            "(from the project's directory, or with PYTHONPATH set); nothing was delivered"
        ) from None
    return obj
