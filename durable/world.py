"""The World protocol: where runs, their event logs and their due times live.

A world stores opaque bytes; serialization stays in the engine. Backends live in ``worlds/`` and
register a URL scheme with :func:`register_world`; this module imports none of them.

Contract shared by every world (checked by ``tests/conformance``):

* A run is created once per id (``create_run`` is idempotent on the id).
* A run is leased by at most one owner at a time. Writes to a run's log (``append``) are
  conditional on holding its lease and raise :class:`~durable.LeaseLost` otherwise.
* ``append`` is one transaction: its events get consecutive sequence numbers after the run's
  last one, and the optional :class:`RunUpdate` is applied atomically with them.
* A lease expires at ``lease_expires_at``; an expired lease may be taken by anyone through
  ``acquire`` or ``claim_due``. Owners keep their leases alive with ``renew_leases``.
* Backend exceptions never escape: they are translated into :class:`~durable.WorldError`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from durable._errors import ConfigurationError

RunStatus = Literal["pending", "running", "suspended", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "pending",
    "running",
    "suspended",
    "completed",
    "failed",
    "cancelled",
)
FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
SUPERSEDED_BY_CANCEL: frozenset[str] = frozenset({"completed", "failed"})
"""Outcomes a requested cancellation supersedes: ``append`` refuses them (``CancelRequested``)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored by a world."""

    id: str
    """The run id (``wrun_...`` unless the caller chose one)."""
    workflow_name: str
    """The registered name of the workflow."""
    status: RunStatus
    """One of :data:`RUN_STATUSES`."""
    input: bytes
    """The serialized ``(args, kwargs)``."""
    output: bytes | None
    """The serialized result once ``completed``."""
    error: bytes | None
    """The serialized error once ``failed``."""
    created_at: float
    """Epoch seconds."""
    updated_at: float
    """Epoch seconds of the last change to this record."""
    wake_at: float | None
    """When a ``suspended`` run is due; ``None`` waits for an outside event."""
    lease_owner: str | None
    """The worker that holds the run, if any."""
    lease_expires_at: float | None
    """When that lease lapses unless renewed."""
    cancel_requested: bool
    """Someone asked for the run to stop at its next durable point."""
    parent_id: str | None
    """The parent run for child workflows."""
    last_seq: int
    """The sequence number of the newest event (0 when none)."""
    events: Sequence[Event] | None = field(default=None, compare=False, repr=False)
    """The run's log up to ``last_seq``, when the world read it with the record (``claim_due``
    may, sparing the worker a read per run); ``None``: read it with ``read_events``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's append-only log."""

    run_id: str
    seq: int
    """1-based position in the run's log."""
    kind: str
    """``run_created``, ``step_completed``, ``step_failed``, ``step_retrying``, ``sleep_started``,
    ``value_recorded``, ``run_completed``, ``run_failed``, ``run_cancelled``, ..."""
    op_id: str | None
    """The operation's deterministic position in the workflow (``"3"``, ``"4.1.2"``)."""
    name: str | None
    """The step or operation name recorded at that position."""
    data: bytes | None
    """The payload in durable's encoding; :meth:`value` decodes it."""
    created_at: float

    def value(self) -> Any:
        """The payload as a Python value, or ``None`` if the event has none.

        A step's result, a hook's payload, a recorded ``now()``/``random()``/``uuid4()`` value,
        or a dict describing an error (``type``, ``message``, ``traceback``, ...).

        Raises:
            SerializationError: the payload cannot be decoded in this process (its class does
                not import here, or it was pickled and pickle is not installed).
        """
        if self.data is None:
            return None
        from durable._serialization import loads  # the protocol module stays free of the engine

        return loads(self.data)


@dataclass(frozen=True, slots=True)
class NewRun:
    """What ``create_run`` needs."""

    id: str
    workflow_name: str
    input: bytes
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; the world assigns ``seq`` and ``created_at``."""

    kind: str
    op_id: str | None = None
    name: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """A change to the run record applied in the same transaction as appended events."""

    status: RunStatus
    wake_at: float | None = None
    output: bytes | None = None
    error: bytes | None = None
    release: bool = False
    """Drop the lease (suspension, completion, failure, cancellation)."""
    expected_seq: int | None = None
    """The newest ``seq`` the writer has seen. If the log has grown past it before this
    append (a hook was resumed meanwhile), a ``suspended`` run becomes due at once
    (``wake_at`` = now) so that nothing resumed is left waiting. A run suspended while its
    cancellation is requested is due at once too, so a worker records the cancellation."""


@dataclass(frozen=True, slots=True)
class HookRecord:
    """A live hook: a token an outside system can resume a waiting run with."""

    token: str
    """Unique among live hooks."""
    run_id: str
    """The run that created the hook."""
    op_id: str
    """The operation id of ``create_hook`` in that run."""
    created_at: float
    """Epoch seconds."""
    timeout_at: float | None = None
    """When the workflow stops waiting (``HookTimeout``); ``None`` waits forever."""
    schema: str | None = None
    """``module:QualName`` of a pydantic model payloads must validate against."""

    def timed_out(self, now: float) -> bool:
        """Whether its timeout has passed, so that a payload would come after the wait ended.

        A run whose wait timed out while no worker ran it must still take its timeout path.
        """
        return self.timeout_at is not None and now >= self.timeout_at


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A named stream of chunks that a run's steps write (see ``World.write_chunks``)."""

    run_id: str
    """The run the stream belongs to."""
    name: str
    """The stream's name, unique within the run."""
    length: int
    """How many chunks it holds (indexes ``0`` to ``length - 1``)."""
    closed: bool
    """No chunk will follow: a writer closed it, or its run finished."""
    created_at: float
    """Epoch seconds of the first write."""
    updated_at: float
    """Epoch seconds of the last write."""


@dataclass(frozen=True, slots=True)
class RunLifetime:
    """How long a world keeps a run's log: no wait of the run may end later than this.

    A world with such a limit has a ``run_lifetime`` attribute (read it with
    :func:`run_lifetime`); the engine then refuses, at the call site and recording nothing, a
    sleep, retry delay or hook timeout that would wake the run after it.
    """

    seconds: float
    """From the run's creation."""
    setting: str
    """What sets the limit and how to raise it, quoted by the error that refuses a longer wait."""


def run_lifetime(world: World) -> RunLifetime | None:
    """The world's :class:`RunLifetime`, or ``None`` when it keeps runs as long as they live."""
    found = getattr(world, "run_lifetime", None)
    return found if isinstance(found, RunLifetime) else None


@runtime_checkable
class World(Protocol):
    """Storage and scheduling for runs. Every method is thread-safe."""

    url: str
    """The URL this world was opened from (``sqlite:///...``, ``memory://``, ``aws://``)."""

    def now(self) -> float:
        """Current time in epoch seconds as this world sees it (tests may control it)."""
        ...

    def create_run(
        self, run: NewRun, *, owner: str | None, lease_ttl: float
    ) -> tuple[RunRecord, bool]:
        """Record a new run with a ``run_created`` event, or return the existing one.

        With ``owner`` the run is created ``running`` and leased to it; otherwise ``pending``.
        Returns the stored record and whether this call created it.
        """
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""
        ...

    def count_runs(self) -> dict[str, int]:
        """Number of runs by status."""
        ...

    def read_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with ``seq > after_seq``, oldest first."""
        ...

    def append(
        self,
        run_id: str,
        owner: str,
        events: Sequence[NewEvent],
        update: RunUpdate | None = None,
    ) -> bool:
        """Append events (and apply ``update``) in one transaction, if ``owner`` holds the lease.

        Returns whether cancellation has been requested for the run.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease.
            CancelRequested: ``update`` ends the run ``completed`` or ``failed`` but its
                cancellation was requested (checked in the same transaction); nothing was
                written.
        """
        ...

    def acquire(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        """Lease one run if it is runnable now, marking it ``running``.

        Runnable: pending; suspended and due; running with an expired lease. Returns the leased
        record or ``None``.
        """
        ...

    def claim_due(
        self,
        owner: str,
        lease_ttl: float,
        limit: int,
        workflow_names: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        """Lease up to ``limit`` runnable runs (see ``acquire``), oldest due first.

        With ``workflow_names``, only runs of those workflows are considered.
        """
        ...

    def next_due_at(self, workflow_names: Sequence[str] | None = None) -> float | None:
        """The earliest time a not-yet-runnable suspended run becomes due, if any."""
        ...

    def renew_leases(self, owner: str, lease_ttl: float) -> int:
        """Extend every lease ``owner`` holds; returns how many."""
        ...

    def release(self, run_id: str, owner: str) -> None:
        """Give a leased run back (status ``pending``) so another worker can take it now."""
        ...

    def reopen(self, run_id: str, owner: str, lease_ttl: float) -> RunRecord | None:
        """Lease a ``failed`` run to ``owner`` again (``running``), so that it can be retried.

        Its recorded error is cleared; its log stays as it is (``run_failed`` included).
        Returns the leased record, or ``None`` if there is no such run or it is not ``failed``.
        """
        ...

    def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask a run to stop at its next durable point; returns the updated record.

        An unleased unfinished run becomes due at once so a worker records the cancellation.
        """
        ...

    def create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        """Register a live hook and append its ``hook_created`` event, in one transaction.

        Registering the same token again for the same run and operation (a replay) does
        nothing.

        Raises:
            HookConflict: another live hook holds the token.
            LeaseLost: ``owner`` does not hold the run's lease.
        """
        ...

    def resume_hook(self, token: str, payload: bytes) -> HookRecord:
        """Deliver a payload to the hook's run, making the run due now if it is suspended.

        Appends a ``hook_received`` event (``op_id`` = the hook's, ``data`` = the payload).

        Needs no lease: it may run while a worker executes the run. Returns the hook.

        Raises:
            HookNotFound: no live hook has this token (never created, timed out, disposed, or
                its run finished).
        """
        ...

    def dispose_hook(
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None = None,
        expected_seq: int | None = None,
    ) -> bool:
        """End a hook so later resumes raise ``HookNotFound``; append ``event`` with it.

        With ``expected_seq``, nothing happens (returns False) if the run's log has grown past
        it: a payload may have arrived, and the caller must look again before timing out.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease.
        """
        ...

    def get_hook(self, token: str) -> HookRecord | None:
        """The live hook with this token, or ``None``."""
        ...

    def list_hooks(self, run_id: str | None = None) -> list[HookRecord]:
        """Live hooks, oldest first, optionally of one run."""
        ...

    def delete_runs(self, finished_before: float) -> int:
        """Remove finished runs (and their events) older than a time; returns how many.

        A child run whose parent is not finished stays: the parent's replay reads its outcome.
        """
        ...

    def close(self) -> None:
        """Release resources; the world may not be used afterwards."""
        ...

    def write_chunks(
        self,
        run_id: str,
        owner: str,
        stream: str,
        writer: str,
        position: int,
        chunks: Sequence[bytes],
        *,
        close: bool = False,
    ) -> bool:
        """Append chunks to a named stream of a run (created on first write), in one transaction.

        Chunks are opaque bytes, numbered from 0 in the order they were appended; a chunk,
        once appended, is never changed or removed (except with its run by ``delete_runs``),
        so readers may consume chunks while the run goes on.

        ``writer`` names what writes (the engine passes the step's operation id, the same for
        every attempt of the step) and ``position`` is the index of ``chunks[0]`` among the
        chunks this execution of the writer has written to this stream so far (0 for its first
        write). The world keeps, per stream and writer, how many positions have been written
        (the high-water mark); chunks at positions below it were already written by an earlier
        attempt (one that failed, or that was cut short by a crash) and are dropped, the others
        are appended and move the mark. So when a step retries, its new attempt's first N
        chunks, where N is how many the earlier attempts wrote, are taken to repeat what readers
        have already received and are not delivered twice.

        With ``close`` the stream is closed after the chunks are appended. Closing is final: a
        closed stream accepts no more chunks. Writing to a stream the same ``writer`` closed
        drops the chunks and returns True (a re-execution of a step that already finished);
        writing to one another writer closed changes nothing and returns False.

        Writes are conditional on the lease, like ``append``: only the worker executing the run
        can write, so nothing is written to a finished run, or by a worker that lost its run.

        Returns:
            False if another writer had closed the stream (nothing was written); True otherwise.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
        """
        ...

    def read_chunks(
        self, run_id: str, stream: str, start: int = 0, limit: int | None = None
    ) -> tuple[list[bytes], bool]:
        """The stream's chunks from index ``start`` (at most ``limit``), and whether it is closed.

        Needs no lease. A stream nothing has written to yet reads as empty. The flag is True
        when no chunk can ever follow the ones returned: the stream was closed (or its run has
        finished, or does not exist) and the returned chunks reach its end. The chunks and the
        flag are consistent with each other: a reader that stops at ``closed`` misses nothing.
        """
        ...

    def list_streams(self, run_id: str) -> list[StreamRecord]:
        """The run's streams, in the order they were first written to."""
        ...


WorldFactory = Callable[[str], World]
_factories: dict[str, WorldFactory] = {}
_lock = threading.Lock()


def register_world(scheme: str, factory: WorldFactory) -> None:
    """Make ``open_world`` build worlds for URLs starting with ``scheme://``."""
    with _lock:
        _factories[scheme] = factory


def open_world(url: str) -> World:
    """Open the world a URL names (``memory://``, ``sqlite:///path.db``, ``aws://``).

    Raises:
        ConfigurationError: the URL's scheme is unknown or its backend is not installed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"world URL {url!r} has no scheme: use memory://, sqlite:///path/to.db or aws://"
        )
    _load_builtin(scheme)
    with _lock:
        factory = _factories.get(scheme)
    if factory is None:
        raise ConfigurationError(
            f"unknown world scheme {scheme!r} in {url!r}: use memory://, sqlite:///path/to.db "
            "or aws://"
        )
    return factory(url)


def _load_builtin(scheme: str) -> None:
    # Built-in worlds register themselves on import; import lazily so `durable` never needs a
    # backend it does not use (and `aws://` can say which extra is missing).
    import importlib

    module = {"memory": "worlds.memory", "sqlite": "worlds.sqlite", "aws": "worlds.aws"}.get(scheme)
    if module is None or scheme in _factories:
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if scheme == "aws":
            raise ConfigurationError(
                "the aws world needs extra packages: pip install 'durable-sdk[aws]'"
            ) from exc
        raise


def make_owner_id() -> str:
    """A lease owner id for this process: ``host:pid:random``."""
    import uuid

    return f"{_process_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@functools.cache
def _process_host() -> str:
    """This host's name, with the id of the PID namespace where there is one (Linux).

    Processes on one host judge each other dead by pid (see :func:`owner_is_dead`), which only
    works within one PID namespace: containers sharing a hostname (host networking) and a
    database file each number their processes on their own.
    """
    import socket

    host = socket.gethostname().replace(":", "_")
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host
    digits = "".join(char for char in namespace if char.isdigit())
    return f"{host}/pidns{digits}" if digits else host


def is_runnable(
    status: str,
    wake_at: float | None,
    lease_owner: str | None,
    lease_expires_at: float | None,
    now: float,
) -> bool:
    """Whether a run in this state may be leased at ``now``: the rule of ``World.acquire``.

    Pending and not leased, suspended and due, or running under a lease that lapsed or whose
    owner died.
    """
    if status == "pending":
        return lease_owner is None
    if status == "suspended":
        return wake_at is not None and wake_at <= now
    if status == "running":
        return (lease_expires_at or 0.0) <= now or owner_is_dead(lease_owner)
    return False


def owner_is_dead(owner: str | None) -> bool:
    """Whether a lease owner is a process on this host that no longer exists.

    Lets a local world hand over the runs of a killed process at once instead of waiting for the
    lease to lapse. Owners on other hosts are never judged dead here.
    """
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _process_host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child that its parent has not reaped yet still answers kill(pid, 0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


MAX_KEY_LENGTH = 256
"""Longest run id or hook token accepted: every world keeps them in keys, and DynamoDB's are
bounded (2,048 bytes)."""


def check_key(value: object, name: str) -> None:
    """Refuse a run id or hook token that not every world could store alike.

    Raises:
        TypeError: not a non-empty string.
        ValueError: too long, or holding control characters.
    """
    if not isinstance(value, str) or not value.strip():
        kind = type(value).__name__
        raise TypeError(f"{name} must be a non-empty string, got {value!r} ({kind})")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(
            f"{name} is {len(value)} characters long; the most is {MAX_KEY_LENGTH}: use a "
            "shorter one (a hash of a long business key, say)"
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError(f"{name} {value!r} holds control characters; use printable text")
