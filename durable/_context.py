"""Where the engine keeps track of the run and branch the current code executes in."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from durable._errors import ConfigurationError

if TYPE_CHECKING:
    from durable._engine import RunContext

_collection = threading.local()


def _note_collection(phase: str, info: dict[str, Any]) -> None:
    _collection.running = phase == "start"


gc.callbacks.append(_note_collection)


class Branch:
    """A line of execution inside a run. Operation ids are ``path`` + a per-branch counter.

    Ids therefore depend only on the order of calls within a branch, never on which of several
    concurrent branches finishes first.
    """

    __slots__ = ("path", "counter", "stopped")

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.counter = 0
        self.stopped: BaseException | None = None
        """The suspension (or worse) this branch unwinds with: it may perform nothing more."""

    def next_op(self) -> str:
        """The id of the next operation in this branch.

        Raises:
            BaseException: the branch is unwinding (see ``stopped``). Code that runs on the way
                out (a ``finally``, an ``__exit__``, an ``except BaseException``) would otherwise
                run its steps now, long before the run resumes, or go on as if it had not stopped.
        """
        if self.stopped is not None:
            raise self.stopped
        if getattr(_collection, "running", False):
            # Code the garbage collector runs (a generator's finally, a __del__) belongs to no
            # run: it may be another run's object, finalized wherever the collection happened.
            raise ConfigurationError(
                "a durable operation was called while the garbage collector finalized an object "
                "(a generator or async generator left unfinished, a __del__): close generators "
                "in the workflow (generator.close(), await agen.aclose()) before they are dropped"
            )
        self.counter += 1
        return f"{self.path}{self.counter}"


@dataclass(frozen=True, slots=True)
class Frame:
    """The run and branch that workflow code is executing in."""

    ctx: RunContext
    branch: Branch


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What a step can know about its own execution (see :func:`durable.step_info`)."""

    run_id: str
    """The run this step belongs to."""
    step_id: str
    """The step's deterministic position in the workflow, e.g. ``"3"`` or ``"4.1.2"``."""
    name: str
    """The step's registered name."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, ..."""

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and replays: pass it to outside APIs to make calls idempotent."""
        return f"{self.run_id}:{self.step_id}"


current_frame: ContextVar[Frame | None] = ContextVar("durable_frame", default=None)
current_step: ContextVar[StepInfo | None] = ContextVar("durable_step", default=None)
step_clock: ContextVar[Callable[[], float] | None] = ContextVar("durable_step_clock", default=None)
"""The world's clock while a step runs (a test world's skips time), for ``durable.now()``."""
