"""Streams: a step writes chunks that clients read while the run goes on.

Token streaming from an AI agent, progress reports, logs: inside a step,
``durable.stream(name)`` returns a :class:`StreamWriter`; anywhere else (any process),
``run.stream(name)`` iterates the chunks as they are written (``run.astream(name)`` with
``async for``).

Semantics:

* A stream is a named, append-only sequence of chunks belonging to one run (``"default"`` unless
  named). Its chunks are numbered from 0 in the order they were written; once written, a chunk is
  never changed or taken back. Each ``write`` is one durable write, readable at once.
* ``write(chunk)``: a ``str`` is read back as ``str``, ``bytes`` as ``bytes``, anything else is
  serialized like a step result (JSON: dicts, lists, pydantic models, dataclasses, datetimes, ...)
  and read back as an equal value. A value that cannot be serialized raises
  :class:`~durable.SerializationError` at the call and writes nothing.
* Closing: ``close()`` closes a stream explicitly; it closes by itself when the step that opened
  it returns (unless opened with ``keep_open=True``, for a stream that several steps write in
  turn, such as one agent's tokens over several model calls); and every stream of a run counts
  as closed once the run has finished (completed, failed or cancelled), so a reader never waits
  on a finished run. A step that raises does not close its streams: its retry continues them.
  Closing is final: writing to a closed stream raises :class:`~durable.StreamClosed` (a
  :class:`~durable.ConfigurationError` that fails the step without retrying it).
* Retries: a failed attempt's chunks have already been delivered, so they stay. The next attempt
  of the same step skips its first N writes to that stream, N being how many chunks its earlier
  attempts wrote there, and its later writes continue the stream: a retry that produces the same
  output as far as the failed attempt got resumes the stream exactly where it stopped, and no
  chunk is delivered twice. (A retry whose output differs shows readers the failed attempt's
  first N chunks followed by the retry's from position N on.) The same holds when a step runs
  again after a crash, and once the stream is closed by the step, a re-execution writes nothing.
* Writes need the run's lease: only the worker executing the step writes; a worker that lost
  the run gets :class:`~durable.LeaseLost` (it stops, and the new owner re-executes the step).
* Reading needs no lease and no worker: ``run.stream(name, start=0, timeout=None)`` yields the
  chunks from index ``start``, waits for new ones (polling with a backoff up to 0.1 s) while the
  stream is open, and ends when it is closed. ``timeout`` bounds the wait for each next chunk
  (``TimeoutError``). To resume after a disconnect, pass the number of chunks already received
  as ``start``.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from durable._context import StepInfo, current_step
from durable._errors import (
    ConfigurationError,
    FatalError,
    LeaseLost,
    SerializationError,
    WorldError,
)
from durable._serialization import dumps, loads
from durable.world import World, check_key

log = logging.getLogger("durable")

DEFAULT_STREAM = "default"
"""The stream ``durable.stream()`` and ``Run.stream()`` use when given no name."""


class StreamClosed(ConfigurationError, FatalError):
    """A step wrote to a stream that is closed. A programming error: the step is not retried."""


# The first byte of a stored chunk says how its writer gave it.
_TEXT = b"t"
_BYTES = b"b"
_VALUE = b"j"


def encode_chunk(chunk: Any, *, what: str = "stream chunk") -> bytes:
    """The stored form of a chunk: a one-byte tag (text, bytes or value), then its body.

    Raises:
        SerializationError: the chunk is a value that cannot be serialized.
    """
    if isinstance(chunk, str):
        return _TEXT + chunk.encode("utf-8", "surrogatepass")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(chunk)
    return _VALUE + dumps(chunk, what=what)


def decode_chunk(data: bytes) -> Any:
    """The chunk a writer gave, from its stored form (see :func:`encode_chunk`).

    Raises:
        SerializationError: the stored bytes are not a chunk written by durable.
    """
    tag, body = data[:1], data[1:]
    if tag == _TEXT:
        return body.decode("utf-8", "surrogatepass")
    if tag == _BYTES:
        return bytes(body)
    if tag == _VALUE:
        return loads(body, what="stream chunk")
    raise SerializationError(f"cannot load a stream chunk: unknown format tag {tag!r}")


class StreamWriter:
    """Writes chunks to one named stream of the current run. Get one with :func:`stream`.

    Thread-safe: threads of the step may share it; their chunks are appended in call order.
    Usable as a context manager, which closes the stream when the block ends without an
    exception.
    """

    def __init__(self, world: World, owner: str, info: StepInfo, name: str) -> None:
        self.name = name
        """The stream's name."""
        self.run_id = info.run_id
        """The run the stream belongs to."""
        self.keep_open = False
        """Leave the stream open when the step returns (see :func:`stream`)."""
        self._world = world
        self._owner = owner
        self._writer = info.step_id
        self._step = info.name
        self._lock = threading.Lock()
        self._position = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StreamWriter {self.name!r} of run {self.run_id} ({state})>"

    @property
    def closed(self) -> bool:
        """Whether this writer has closed the stream (or found it closed)."""
        return self._closed

    def write(self, chunk: Any) -> None:
        """Append a chunk (``str``, ``bytes`` or a serializable value); readers see it at once.

        Raises:
            StreamClosed: the stream is closed (by this writer, or by another step).
            SerializationError: the chunk cannot be serialized; nothing was written.
            LeaseLost: this worker no longer holds the run.
        """
        data = encode_chunk(chunk, what=f"chunk for stream {self.name!r} (step {self._step!r})")
        with self._lock:
            if self._closed:
                raise StreamClosed(
                    f"stream {self.name!r} of run {self.run_id} is closed; a closed stream "
                    "takes no more chunks (use another name, or durable.stream(name, "
                    "keep_open=True) to write one stream from several steps)"
                )
            accepted = self._world.write_chunks(
                self.run_id, self._owner, self.name, self._writer, self._position, [data]
            )
            if not accepted:
                self._closed = True
                raise StreamClosed(
                    f"stream {self.name!r} of run {self.run_id} was closed by another step; "
                    f"step {self._step!r} cannot write to it. A stream closes when the step "
                    "that opened it returns: open it with durable.stream(name, keep_open=True) "
                    "to write it from several steps, or give each step its own stream name"
                )
            self._position += 1

    def close(self) -> None:
        """Close the stream: readers end after its last chunk. Closing again does nothing.

        Raises:
            LeaseLost: this worker no longer holds the run.
        """
        with self._lock:
            if self._closed:
                return
            self._world.write_chunks(
                self.run_id, self._owner, self.name, self._writer, self._position, [], close=True
            )
            self._closed = True

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A step that raises keeps its stream open: its retry continues it.
        if exc_type is None:
            self.close()


# The writers each executing step attempt has opened, by id() of its StepInfo (a new object per
# execution, kept alive by the entry so that its id is not reused while the entry exists).
_registry_lock = threading.Lock()
_open: dict[int, tuple[StepInfo, dict[str, StreamWriter]]] = {}


def stream(name: str = DEFAULT_STREAM, *, keep_open: bool = False) -> StreamWriter:
    """The writer of the current run's stream ``name``, for use inside a step.

    Within one execution of a step, every call with the same name returns the same writer.

    Args:
        name: the stream's name; clients read it with ``run.stream(name)``.
        keep_open: do not close the stream when the step returns, so that later steps can
            write to it too; it closes with ``close()`` or when the run finishes.

    Raises:
        ConfigurationError: not called inside a step, or ``name`` is not a non-empty string.
        ValueError: ``name`` is longer than 256 characters or holds control characters.
    """
    info = current_step.get()
    if info is None:
        raise ConfigurationError(
            "durable.stream() is only available inside a step (a @step function running in a "
            "workflow): steps write streams, and clients read them with run.stream(name)"
        )
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a stream name must be a non-empty string, not {name!r}")
    check_key(name, "stream name")  # kept in keys, as run ids and hook tokens are
    with _registry_lock:
        entry = _open.get(id(info))
        writers = entry[1] if entry is not None and entry[0] is info else None
        writer = writers.get(name) if writers is not None else None
    if writer is None:
        from durable._engine import step_recorder

        # The lease of the execution running this step: a Lambda handler's runtime, say, is
        # not the process's default one.
        recorder = step_recorder.get()
        if recorder is not None:
            created = StreamWriter(recorder.world, recorder.owner, info, name)
        else:  # a step run outside the engine's step call (not expected)
            from durable._client import get_runtime

            runtime = get_runtime()
            created = StreamWriter(runtime.world, runtime.owner, info, name)
        with _registry_lock:
            entry = _open.get(id(info))
            if entry is None or entry[0] is not info:
                entry = _open[id(info)] = (info, {})
            writer = entry[1].setdefault(name, created)
    if keep_open:
        writer.keep_open = True
    return writer


def end_step_streams(info: StepInfo, succeeded: bool) -> None:
    """Engine hook: one execution of a step has ended (``info`` is the one it ran with).

    When it returned, the streams it opened close (except ``keep_open`` ones); when it raised,
    they stay open for the retry. Either way its writers are forgotten. A close that the world
    fails to record is logged: the stream then closes when the run finishes.

    Raises:
        LeaseLost: this worker no longer holds the run.
    """
    if not _open:
        return
    with _registry_lock:
        entry = _open.pop(id(info), None)
    if entry is None or entry[0] is not info or not succeeded:
        return
    for writer in entry[1].values():
        if writer.keep_open:
            continue
        try:
            writer.close()
        except LeaseLost:
            raise
        except WorldError as exc:
            log.warning(
                "run %s: could not close stream %r when step %r returned (%s); it closes when "
                "the run finishes",
                info.run_id,
                writer.name,
                info.name,
                exc,
            )
