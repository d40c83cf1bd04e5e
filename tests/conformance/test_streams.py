"""Streams: the World contract (every world) and steps writing / clients reading (every engine)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

import durable
from durable import ConfigurationError, RetryPolicy, StreamClosed, StreamWriter, step, workflow
from durable._errors import LeaseLost
from durable.world import NewEvent, NewRun, RunUpdate, World

TTL = 30.0
A = "worker-a"
B = "worker-b"


# -- the World contract ------------------------------------------------------------------------


def create(world: World, run_id: str = "run-1", owner: str | None = A) -> None:
    _, created = world.create_run(NewRun(run_id, "wf", b"input"), owner=owner, lease_ttl=TTL)
    assert created


def finish(world: World, run_id: str = "run-1", owner: str = A) -> None:
    update = RunUpdate("completed", output=b"o", release=True)
    world.append(run_id, owner, [NewEvent("run_completed")], update)


def test_chunks_are_read_in_order_from_any_index(world: World):
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a", b"b"])
    world.write_chunks("run-1", A, "s", "1", 2, [b"c"])
    world.write_chunks("run-1", A, "s", "2", 0, [b"d", b""])
    assert world.read_chunks("run-1", "s") == ([b"a", b"b", b"c", b"d", b""], False)
    assert world.read_chunks("run-1", "s", 3) == ([b"d", b""], False)
    assert world.read_chunks("run-1", "s", 5) == ([], False)
    assert world.read_chunks("run-1", "s", 99) == ([], False)
    assert world.read_chunks("run-1", "s", 1, limit=2) == ([b"b", b"c"], False)
    assert world.read_chunks("run-1", "other") == ([], False)


def test_payloads_are_opaque_bytes(world: World):
    create(world)
    payloads = [bytes(range(256)), b"\x00", b"x" * 100_000]
    world.write_chunks("run-1", A, "bin", "1", 0, payloads)
    assert world.read_chunks("run-1", "bin") == (payloads, False)


def test_close_ends_the_stream_and_is_final(world: World):
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a", b"b"], close=True)
    assert world.read_chunks("run-1", "s") == ([b"a", b"b"], True)
    # A limited read that stops short of the end is not the end yet.
    assert world.read_chunks("run-1", "s", 0, limit=1) == ([b"a"], False)
    assert world.read_chunks("run-1", "s", 1, limit=1) == ([b"b"], True)
    # The closing writer again (a re-executed step): accepted, dropped.
    assert world.write_chunks("run-1", A, "s", "1", 2, [b"late"]) is True
    # Another writer: refused.
    assert world.write_chunks("run-1", A, "s", "2", 0, [b"other"]) is False
    assert world.write_chunks("run-1", A, "s", "2", 0, [], close=True) is False
    assert world.read_chunks("run-1", "s") == ([b"a", b"b"], True)


def test_close_without_chunks(world: World):
    create(world)
    world.write_chunks("run-1", A, "empty", "1", 0, [], close=True)
    assert world.read_chunks("run-1", "empty") == ([], True)


def test_a_retried_writer_does_not_deliver_chunks_twice(world: World):
    create(world)
    # Attempt 1 of step "3" writes two chunks, then fails.
    world.write_chunks("run-1", A, "tokens", "3", 0, [b"Hel"])
    world.write_chunks("run-1", A, "tokens", "3", 1, [b"lo"])
    # Attempt 2 starts again from position 0: what attempt 1 wrote is not appended again.
    world.write_chunks("run-1", A, "tokens", "3", 0, [b"Hel"])
    assert world.read_chunks("run-1", "tokens") == ([b"Hel", b"lo"], False)
    # A batch straddling the mark: only the part past it is new.
    world.write_chunks("run-1", A, "tokens", "3", 1, [b"lo", b" wor"])
    world.write_chunks("run-1", A, "tokens", "3", 3, [b"ld"], close=True)
    assert world.read_chunks("run-1", "tokens") == ([b"Hel", b"lo", b" wor", b"ld"], True)


def test_each_writer_has_its_own_mark(world: World):
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a1", b"a2"])
    world.write_chunks("run-1", A, "s", "2", 0, [b"b1"])
    world.write_chunks("run-1", A, "s", "1", 0, [b"a1"])  # retry of "1": dropped
    world.write_chunks("run-1", A, "t", "1", 0, [b"x"])  # another stream: its own mark
    assert world.read_chunks("run-1", "s") == ([b"a1", b"a2", b"b1"], False)
    assert world.read_chunks("run-1", "t") == ([b"x"], False)


def test_writes_need_the_lease(world: World):
    create(world)
    with pytest.raises(LeaseLost):
        world.write_chunks("run-1", B, "s", "1", 0, [b"a"])
    with pytest.raises(LeaseLost):
        world.write_chunks("missing", A, "s", "1", 0, [b"a"])
    assert world.read_chunks("run-1", "s") == ([], False)
    finish(world)
    with pytest.raises(LeaseLost):
        world.write_chunks("run-1", A, "s", "1", 0, [b"a"])


def test_a_finished_run_closes_its_streams(world: World):
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a", b"b"])
    assert world.read_chunks("run-1", "s") == ([b"a", b"b"], False)
    finish(world)
    assert world.read_chunks("run-1", "s") == ([b"a", b"b"], True)
    assert world.read_chunks("run-1", "s", 2) == ([], True)
    assert world.read_chunks("run-1", "never-written") == ([], True)
    assert world.read_chunks("no-such-run", "s") == ([], True)


def test_a_suspended_run_keeps_its_streams_open(world: World):
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a"])
    world.append(
        "run-1",
        A,
        [NewEvent("sleep_started", "2", "sleep")],
        RunUpdate("suspended", wake_at=world.now() + 60, release=True),
    )
    assert world.read_chunks("run-1", "s") == ([b"a"], False)
    with pytest.raises(LeaseLost):
        world.write_chunks("run-1", A, "s", "1", 1, [b"b"])


def test_list_streams(world: World):
    create(world)
    assert world.list_streams("run-1") == []
    world.write_chunks("run-1", A, "first", "1", 0, [b"a", b"b"], close=True)
    world.write_chunks("run-1", A, "second", "2", 0, [b"c"])
    streams = world.list_streams("run-1")
    assert [(s.run_id, s.name, s.length, s.closed) for s in streams] == [
        ("run-1", "first", 2, True),
        ("run-1", "second", 1, False),
    ]
    assert all(s.created_at <= s.updated_at for s in streams)
    finish(world)
    assert [s.closed for s in world.list_streams("run-1")] == [True, True]


def test_deleting_a_run_deletes_its_streams(world: World, clock):
    create(world, "old")
    world.write_chunks("old", A, "s", "1", 0, [b"old"])
    finish(world, "old")
    create(world, "kept")
    world.write_chunks("kept", A, "s", "1", 0, [b"kept"])
    clock.advance(10)
    assert world.delete_runs(world.now()) == 1
    assert world.list_streams("old") == []
    assert world.read_chunks("old", "s") == ([], True)
    assert world.read_chunks("kept", "s") == ([b"kept"], False)
    create(world, "new")
    world.write_chunks("new", A, "s", "1", 0, [b"new"])
    assert world.read_chunks("new", "s") == ([b"new"], False)
    assert world.read_chunks("kept", "s") == ([b"kept"], False)


def test_streams_are_shared_by_handles_on_one_store(world: World, open_again):
    other = open_again()
    create(world)
    world.write_chunks("run-1", A, "s", "1", 0, [b"a"])
    assert other.read_chunks("run-1", "s") == ([b"a"], False)
    other.write_chunks("run-1", A, "s", "1", 0, [b"a"])  # the same writer, retried elsewhere
    other.write_chunks("run-1", A, "s", "1", 1, [b"b"], close=True)
    assert world.read_chunks("run-1", "s") == ([b"a", b"b"], True)


def test_concurrent_writers_get_distinct_indexes(world: World):
    create(world)
    errors: list[BaseException] = []

    def write(writer: str) -> None:
        try:
            for i in range(25):
                world.write_chunks("run-1", A, "s", writer, i, [f"{writer}:{i}".encode()])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(str(w),)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    chunks, _ = world.read_chunks("run-1", "s")
    assert len(chunks) == 100
    for w in range(4):
        mine = [c for c in chunks if c.startswith(f"{w}:".encode())]
        assert mine == [f"{w}:{i}".encode() for i in range(25)]


# -- steps write, clients read -----------------------------------------------------------------

gate = threading.Event()
attempts: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset():
    gate.clear()
    attempts.clear()
    yield
    gate.set()  # never leave a step blocked


def next_chunk(chunks, timeout: float = 10.0):
    """``next(chunks)`` that cannot hang the suite."""
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(next(chunks)), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result, "no chunk arrived"
    return result[0]


class Point(BaseModel):
    x: int
    y: int


@step
def talk(words: list[str]) -> int:
    out = durable.stream()
    for word in words:
        out.write(word)
    gate.wait(10)
    out.write("done")
    return len(words)


@workflow
def talker(words: list[str]) -> int:
    return talk(words)


def test_chunks_are_readable_while_the_step_runs(engine):
    run = talker.start(["hello", "world"])
    chunks = run.stream()
    assert next_chunk(chunks) == "hello"
    assert next_chunk(chunks) == "world"
    assert run.status == "running"
    gate.set()
    assert list(chunks) == ["done"]
    assert run.result(timeout=10) == 2
    assert list(run.stream()) == ["hello", "world", "done"]


@step
def kinds() -> None:
    out = durable.stream("kinds")
    out.write("text")
    out.write(b"\x00bytes\xff")
    out.write({"n": 1, "items": [1, 2]})
    out.write(Point(x=1, y=2))
    out.write(None)
    out.write("")


@workflow
def kinds_flow() -> str:
    kinds()
    return "ok"


def test_chunks_keep_their_type_and_order_and_can_be_read_from_an_index(engine):
    run = kinds_flow.start()
    assert run.result(timeout=10) == "ok"
    expected = ["text", b"\x00bytes\xff", {"n": 1, "items": [1, 2]}, Point(x=1, y=2), None, ""]
    assert list(run.stream("kinds")) == expected
    assert list(run.stream("kinds", start=3)) == expected[3:]
    assert list(run.stream("kinds", start=6)) == []
    assert list(run.stream("kinds", start=100)) == []
    assert list(run.stream("never-written")) == []
    with pytest.raises(ValueError):
        list(run.stream("kinds", start=-1))


@step
def progress(total: int) -> int:
    out = durable.stream("progress")
    for i in range(total):
        out.write({"done": i + 1, "total": total})
    return total


@step
def hold() -> str:
    gate.wait(10)
    return "held"


@workflow
def progress_then_hold(total: int) -> str:
    progress(total)
    return hold()


def test_the_stream_closes_when_its_step_returns(engine):
    run = progress_then_hold.start(3)
    # The reader ends while the run still waits in the next step.
    got = list(run.stream("progress", timeout=10))
    assert got == [{"done": i, "total": 3} for i in (1, 2, 3)]
    assert run.status in ("running", "suspended")  # forced replay suspends between steps
    gate.set()
    assert run.result(timeout=10) == "held"
    assert [(s.name, s.length, s.closed) for s in engine.world.list_streams(run.id)] == [
        ("progress", 3, True)
    ]


@step(retry=RetryPolicy(max_attempts=3, initial_delay=0, jitter=False))
def flaky_tokens() -> str:
    attempt = durable.step_info().attempt
    attempts["flaky"] = attempt
    out = durable.stream("tokens")
    tokens = ["The", " quick", " brown", " fox"]
    for i, token in enumerate(tokens):
        if attempt == 1 and i == 2:
            raise ConnectionError("model disconnected")
        out.write(token)
    return "".join(tokens)


@workflow
def flaky_flow() -> str:
    return flaky_tokens()


def test_chunks_of_a_failed_attempt_are_not_delivered_twice(engine):
    run = flaky_flow.start()
    assert run.result(timeout=10) == "The quick brown fox"
    assert attempts["flaky"] == 2
    assert list(run.stream("tokens")) == ["The", " quick", " brown", " fox"]
    chunks, closed = engine.world.read_chunks(run.id, "tokens")
    assert len(chunks) == 4 and closed


@step(retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))
def fail_after_writing() -> None:
    attempts["held"] = attempts.get("held", 0) + 1
    out = durable.stream("partial")
    out.write(f"attempt {attempts['held']}")
    if attempts["held"] == 1:
        gate.wait(10)
    raise ValueError("always fails")


@workflow
def failing_flow() -> None:
    fail_after_writing()


def test_a_failed_step_leaves_its_stream_open_until_the_run_finishes(engine):
    run = failing_flow.start()
    chunks = run.stream("partial", timeout=10)
    assert next_chunk(chunks) == "attempt 1"
    gate.set()
    # The retry's first chunk sits at a position attempt 1 already wrote: not delivered.
    assert list(chunks) == []
    with pytest.raises(durable.WorkflowFailed):
        run.result(timeout=10)


@step
def open_ended(text: str) -> None:
    durable.stream("log", keep_open=True).write(text)


@workflow
def keep_open_flow() -> str:
    open_ended("one")
    open_ended("two")
    hold()
    open_ended("three")
    return "done"


def test_keep_open_streams_span_steps_and_close_when_the_run_finishes(engine):
    run = keep_open_flow.start()
    chunks = run.stream("log", timeout=10)
    assert [next_chunk(chunks), next_chunk(chunks)] == ["one", "two"]
    gate.set()
    assert list(chunks) == ["three"]  # ends: the run finished
    assert run.result(timeout=10) == "done"
    assert engine.world.read_chunks(run.id, "log")[1] is True


@step
def closes_early() -> None:
    with durable.stream("early") as out:
        out.write("only")
    assert out.closed
    with pytest.raises(StreamClosed, match="closed"):
        out.write("after close")
    out.close()  # closing again does nothing
    gate.wait(10)


@workflow
def close_early_flow() -> str:
    closes_early()
    return "ok"


def test_explicit_close_ends_readers_before_the_step_returns(engine):
    run = close_early_flow.start()
    assert list(run.stream("early", timeout=10)) == ["only"]
    assert run.status == "running"
    gate.set()
    assert run.result(timeout=10) == "ok"


@step
def writes(name: str, text: str) -> None:
    attempts[text] = attempts.get(text, 0) + 1
    durable.stream(name).write(text)


@workflow
def second_writer_flow() -> str:
    writes("shared", "first")
    try:
        writes("shared", "second")
    except StreamClosed as exc:
        return str(exc)
    return "no error"


def test_writing_to_a_stream_another_step_closed_is_a_clear_error(engine):
    run = second_writer_flow.start()
    message = run.result(timeout=10)
    assert "'shared'" in message and "closed by another step" in message
    assert attempts["second"] == 1  # not retried
    assert issubclass(StreamClosed, ConfigurationError)
    assert list(run.stream("shared")) == ["first"]


@step
def same_writer() -> bool:
    first = durable.stream("x")
    assert durable.stream("x") is first
    assert durable.stream("y") is not first
    first.write(1)
    return isinstance(first, StreamWriter)


@workflow
def same_writer_flow() -> bool:
    return same_writer()


def test_one_writer_per_stream_per_step_execution(engine):
    run = same_writer_flow.start()
    assert run.result(timeout=10) is True
    assert list(run.stream("x")) == [1]
    assert list(run.stream("y")) == []


@workflow
def stream_in_workflow() -> str:
    try:
        durable.stream()
    except ConfigurationError as exc:
        return str(exc)
    return "no error"


def test_stream_outside_a_step_is_a_configuration_error(engine):
    with pytest.raises(ConfigurationError, match="inside a step"):
        durable.stream()
    assert "inside a step" in stream_in_workflow.start().result(timeout=10)


@step
def bad_name() -> None:
    durable.stream("")


def test_stream_names_are_non_empty_strings(engine):
    @workflow(name="bad_stream_name")
    def flow() -> str:
        try:
            bad_name()
        except ConfigurationError as exc:
            return str(exc)
        return "no error"

    assert "non-empty" in flow.start().result(timeout=10)


@step
async def async_tokens(n: int) -> int:
    out = durable.stream("tokens")
    for i in range(n):
        out.write(f"t{i}")
        await asyncio.sleep(0)
    return n


@step
def sync_tokens_in_async_flow() -> None:
    durable.stream("sync").write("from a thread")


@workflow
async def async_flow(n: int) -> int:
    count = await async_tokens(n)
    await sync_tokens_in_async_flow()
    return count


def test_async_workflow_and_async_step_write_streams(engine):
    run = async_flow.start(5)
    assert list(run.stream("tokens", timeout=10)) == [f"t{i}" for i in range(5)]
    assert run.result(timeout=10) == 5
    assert list(run.stream("sync")) == ["from a thread"]


@step
def async_reader_source() -> None:
    out = durable.stream()
    out.write("a")
    gate.wait(10)
    out.write("b")


@workflow
def async_reader_flow() -> None:
    async_reader_source()


def test_astream_reads_asynchronously(engine):
    run = async_reader_flow.start()

    async def read() -> list[object]:
        got = []
        async for chunk in run.astream(timeout=10):
            got.append(chunk)
            if chunk == "a":
                gate.set()
        return got

    assert asyncio.run(read()) == ["a", "b"]
    run.result(timeout=10)


def test_reading_times_out_without_new_chunks(engine):
    run = talker.start(["x"])
    chunks = run.stream(timeout=0.2)
    assert next_chunk(chunks) == "x"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no new chunk"):
        next(chunks)
    assert time.monotonic() - started < 5
    gate.set()
    run.result(timeout=10)


def test_readers_of_a_cancelled_run_end(engine):
    run = keep_open_flow.start()
    chunks = run.stream("log", timeout=10)
    assert [next_chunk(chunks), next_chunk(chunks)] == ["one", "two"]
    run.cancel()
    gate.set()
    # hold() returns, the run stops at its next durable point: the stream ends with it.
    assert list(chunks) == []
    with pytest.raises(durable.WorkflowCancelled):
        run.result(timeout=10)



_take_over: list[object] = []  # what the step calls to have another worker take its run


@step
def writes_after_the_run_was_taken() -> str:
    _take_over[0](durable.step_info().run_id)  # type: ignore[operator]
    durable.stream("s").write("too late")
    return "unreachable"


@workflow
def taken_over() -> str:
    return writes_after_the_run_was_taken()


@pytest.mark.parametrize("how", ["taken", "said so while still held"])
def test_a_step_that_finds_its_run_taken_records_nothing_more(engine, how):
    # Its stream write raises LeaseLost: not the step's failure (a replay would raise it again
    # as the engine's own), nothing is recorded, and the run is left to the worker holding it.
    if engine.forced_replay:
        pytest.skip("one execution, driven by hand")
    world, owner = engine.world, engine.runtime.owner

    def take(run_id: str) -> None:
        if how != "taken":
            raise LeaseLost(run_id)
        world.release(run_id, owner)
        assert world.acquire(run_id, "another-worker", 60.0) is not None

    _take_over[:] = [take]
    run = taken_over.with_options(execute=False).start()
    record = world.acquire(run.id, owner, 60.0)  # no embedded worker polls: one execution
    assert record is not None
    assert engine.runtime.execute(record).status == "lost"
    assert [e.kind for e in run.events()] == ["run_created"]
    holder = "another-worker" if how == "taken" else owner
    assert world.get_run(run.id).lease_owner == holder
