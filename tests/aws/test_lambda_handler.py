"""``durable.aws`` (the Lambda entry point) driven with real SQS messages from a moto server.

Runs are started without executing them (a "start" message waits in the queue); the tests
receive the messages with boto3, wrap them in the event Lambda's SQS event source mapping would
pass, call a handler with a fake context, and settle the messages as the mapping would (delete
the ones not reported in ``batchItemFailures``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lambda_workload as wl  # noqa: E402

import durable  # noqa: E402
import durable.aws  # noqa: E402
from durable._client import use_runtime  # noqa: E402
from durable._runtime import Runtime, RuntimeOptions  # noqa: E402
from durable.world import NewRun  # noqa: E402
from tests.aws_server import REGION, FakeContext, open_aws_world  # noqa: E402

MODULE = "lambda_workload"


class Queue:
    """The world's SQS queue seen through boto3, as Lambda's event source mapping sees it."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        self.url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def receive(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Exactly ``count`` messages (short polls only: the moto server serves one request)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            reply = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, count - len(got)),
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            )
            got.extend(reply.get("Messages", []))
            if len(got) < count:
                assert time.monotonic() < deadline, f"got {len(got)} of {count} messages: {got}"
                time.sleep(0.05)
        assert len(got) == count, got
        return got

    def receive_now(self) -> list[dict[str, Any]]:
        """Whatever is visible now (one short poll)."""
        reply = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
        )
        return list(reply.get("Messages", []))

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def counts(self) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        return {name: int(attrs["Attributes"][name]) for name in names}

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda passes for a batch of SQS messages."""
        arn = f"arn:aws:sqs:{REGION}:123456789012:{self.url.rsplit('/', 1)[-1]}"
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                        "SentTimestamp": m["Attributes"]["SentTimestamp"],
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": m["Attributes"].get(
                            "ApproximateFirstReceiveTimestamp", m["Attributes"]["SentTimestamp"]
                        ),
                    },
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }

    def settle(self, messages: list[dict[str, Any]], result: dict[str, Any]) -> None:
        """Delete the messages the handler did not report as failed (what the mapping does)."""
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def body_of(message: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(message["Body"]))


@pytest.fixture
def world(moto_endpoint: str) -> Iterator[Any]:
    world = open_aws_world(moto_endpoint)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def client(world: Any) -> Iterator[Runtime]:
    """This process's durable API on the world, with no embedded worker: runs stay pending."""
    runtime = Runtime(world, RuntimeOptions(worker=False))
    previous = use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(previous)
        runtime.stop()


@pytest.fixture
def queue(world: Any, moto_endpoint: str) -> Queue:
    return Queue(moto_endpoint, world.config.queue)


def step_counts(run_id: str) -> Counter[str]:
    return Counter(wl.attempts(run_id))


def completed_ops(world: Any, run_id: str) -> list[str]:
    return [e.op_id for e in world.read_events(run_id) if e.kind == "step_completed"]


def no_failures(result: dict[str, Any]) -> bool:
    return result == {"batchItemFailures": []}


# -- a batch of runs ------------------------------------------------------------------------------


def test_batch_of_runs_completes_with_each_step_run_once(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    runs = [wl.lw_sum.with_options(execute=False).start(n) for n in range(4)]
    for run in runs:
        assert world.get_run(run.id).status == "pending"

    messages = queue.receive(len(runs))
    assert {body_of(m)["run"] for m in messages} == {r.id for r in runs}
    assert {body_of(m)["kind"] for m in messages} == {"start"}

    result = handlers()(queue.event(messages), FakeContext(60))
    assert no_failures(result), result
    queue.settle(messages, result)

    for n, run in enumerate(runs):
        record = world.get_run(run.id)
        assert record.status == "completed", record
        assert record.lease_owner is None, record
        assert run.result(timeout=5) == [n * 10, n * 10 + 1, n * 10 + 2]
        ops = completed_ops(world, run.id)
        assert len(ops) == 3 and len(set(ops)) == 3, ops
        counts = step_counts(run.id)
        assert set(counts) == set(ops) and set(counts.values()) == {1}, counts
    # Nothing is left to do: no new message was queued for the finished runs.
    assert queue.receive_now() == []


def test_a_run_failed_in_the_handler_is_logged(
    world: Any,
    client: Runtime,
    queue: Queue,
    handlers: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = wl.lw_breaks.with_options(execute=False).start("A-7")
    messages = queue.receive(1)
    with caplog.at_level(logging.WARNING, logger="durable"):
        result = handlers()(queue.event(messages), FakeContext(60))
    assert no_failures(result), result  # the run failed, the message was handled
    assert world.get_run(run.id).status == "failed"
    lines = [r.getMessage() for r in caplog.records if run.id in r.getMessage()]
    assert any(
        "(workflow lw_breaks) failed: ValueError: order A-7 has no lines" in line
        and f"durable inspect {run.id}" in line
        for line in lines
    ), lines


def test_a_step_writes_its_streams_under_the_handlers_lease(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    # The handler's runtime, not this process's (the client's, another owner), holds the run.
    run = wl.lw_streams.with_options(execute=False).start(3)
    messages = queue.receive(1)
    result = handlers()(queue.event(messages), FakeContext(60))
    assert no_failures(result), result
    queue.settle(messages, result)
    record = world.get_run(run.id)
    assert record.status == "completed", (record.status, record.error)
    assert list(run.stream("progress")) == ["part 0", "part 1", "part 2"]


def test_async_workflows_complete_in_the_handler(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    runs = [wl.lw_sum_async.with_options(execute=False).start(n) for n in range(2)]
    runs.append(wl.lw_sum.with_options(execute=False).start(2))
    messages = queue.receive(len(runs))
    result = handlers()(queue.event(messages), FakeContext(60))
    assert no_failures(result), result
    queue.settle(messages, result)
    for n, run in enumerate(runs):
        record = world.get_run(run.id)
        assert record.status == "completed", (record.status, record.error)
        assert run.result(timeout=5) == [n * 10, n * 10 + 1, n * 10 + 2]
        counts = step_counts(run.id)
        assert len(counts) == 3 and set(counts.values()) == {1}, counts


def test_runs_of_a_batch_execute_concurrently(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    runs = [wl.lw_slow.with_options(execute=False).start(3, 0.4) for _ in range(4)]
    messages = queue.receive(len(runs))
    handler = handlers()
    started = time.monotonic()
    result = handler(queue.event(messages), FakeContext(60))
    took = time.monotonic() - started
    assert no_failures(result), result
    for run in runs:
        assert run.result(timeout=5) == [0, 1, 2]
    # 4 runs of 3 x 0.4 s: one after another they would take 4.8 s, together 1.2 s.
    assert took < 3.6, f"the batch took {took:.2f}s: its runs did not execute concurrently"


# -- messages the handler cannot or need not act on ------------------------------------------------


def test_unknown_workflow_is_the_only_batch_item_failure(
    world: Any,
    client: Runtime,
    queue: Queue,
    handlers: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    known = [wl.lw_sum.with_options(execute=False).start(n) for n in range(2)]
    stranger, created = world.create_run(
        NewRun("wrun_stranger", "defined_nowhere", b'{"args":[],"kwargs":{}}'),
        owner=None, lease_ttl=30.0,
    )
    assert created
    messages = queue.receive(3)
    stranger_message = next(m for m in messages if body_of(m)["run"] == stranger.id)

    result = handlers()(queue.event(messages), FakeContext(60))
    assert result == {"batchItemFailures": [{"itemIdentifier": stranger_message["MessageId"]}]}
    queue.settle(messages, result)
    assert f"run {stranger.id}: its workflow is defined in none of the modules this function " \
        f"imports ({MODULE})" in caplog.text

    for n, run in enumerate(known):
        assert run.result(timeout=5) == [n * 10, n * 10 + 1, n * 10 + 2]
    # The stranger is left pending and unleased for a function that defines its workflow.
    record = world.get_run(stranger.id)
    assert record.status == "pending" and record.lease_owner is None, record
    assert [e.kind for e in world.read_events(stranger.id)] == ["run_created"]


def test_message_for_a_finished_run_is_a_successful_no_op(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    run = wl.lw_sum.with_options(execute=False).start(7)
    messages = queue.receive(1)
    handler = handlers()
    result = handler(queue.event(messages), FakeContext(60))
    assert no_failures(result), result
    queue.settle(messages, result)
    assert run.result(timeout=5) == [70, 71, 72]
    events_before = world.read_events(run.id)
    record_before = world.get_run(run.id)

    # The same hint again (SQS delivers at least once), plus a body this world never writes.
    queue.send(messages[0]["Body"])
    queue.send("not a durable message")
    again = queue.receive(2)
    result = handler(queue.event(again), FakeContext(60))
    assert no_failures(result), result
    queue.settle(again, result)

    assert world.read_events(run.id) == events_before
    record = world.get_run(run.id)
    assert (record.status, record.last_seq, record.updated_at) == (
        "completed", record_before.last_seq, record_before.updated_at,
    )
    assert step_counts(run.id) == Counter({op: 1 for op in completed_ops(world, run.id)})
    assert queue.receive_now() == []


def test_a_duplicate_message_in_two_invocations_executes_the_run_once(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    run = wl.lw_slow.with_options(execute=False).start(3, 0.2)
    messages = queue.receive(1)
    event = queue.event(messages)
    first, second = handlers(), handlers()  # two containers got the same message
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda h=h: results.append(h(event, FakeContext(60))))
        for h in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [{"batchItemFailures": []}] * 2
    assert run.result(timeout=5) == [0, 1, 2]
    counts = step_counts(run.id)
    assert len(counts) == 3 and set(counts.values()) == {1}, counts


# -- time limits and leases -----------------------------------------------------------------------


def test_run_is_handed_back_before_the_deadline_and_resumed_by_the_next_invocation(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    steps = 8
    run = wl.lw_slow.with_options(execute=False).start(steps, 0.5)
    messages = queue.receive(1)

    # 6 s left, 3.75 s margin: the run is told to stop at 2.25 s, during its fifth step; the
    # rest of the margin is for that step to end and for the hand-back's calls (on a loaded
    # machine, moto answers slowly).
    started = time.monotonic()
    result = handlers(margin=3.75)(queue.event(messages), FakeContext(6.0))
    took = time.monotonic() - started
    assert no_failures(result), result
    queue.settle(messages, result)
    assert took < 6.0, f"the handler returned after {took:.2f}s, past its time"

    record = world.get_run(run.id)
    assert record.lease_owner is None, record
    assert record.status in ("pending", "suspended"), record
    if record.status == "suspended":
        assert record.wake_at is not None and record.wake_at <= world.now(), record
    done_first = completed_ops(world, run.id)
    assert 1 <= len(done_first) < steps, done_first
    # A new message carries the run on to the next invocation.
    carried = queue.receive(1)
    assert body_of(carried[0])["run"] == run.id

    result = handlers(margin=1.0)(queue.event(carried), FakeContext(60))
    assert no_failures(result), result
    queue.settle(carried, result)
    assert run.result(timeout=5) == list(range(steps))
    ops = completed_ops(world, run.id)
    assert ops[: len(done_first)] == done_first and len(ops) == steps == len(set(ops)), ops
    counts = step_counts(run.id)
    assert set(counts) == set(ops) and set(counts.values()) == {1}, (
        f"steps ran more than once across the hand-back: {counts}"
    )
    assert queue.receive_now() == []


def test_batch_arriving_with_less_time_than_the_margin_does_not_overrun_the_deadline(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    run = wl.lw_slow.with_options(execute=False).start(8, 1.0)
    messages = queue.receive(1)

    # 5 s left with a 6 s margin: there is no time to execute anything (the run needs 8 s).
    started = time.monotonic()
    result = handlers(margin=6.0)(queue.event(messages), FakeContext(5.0))
    took = time.monotonic() - started
    assert took < 5.0, f"the handler returned after {took:.2f}s, past its time"
    queue.settle(messages, result)

    record = world.get_run(run.id)
    assert record.status != "completed" and record.lease_owner is None, record
    # Either the message is retried (reported failed) or the run was handed back with a new one.
    failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
    if failed != [messages[0]["MessageId"]]:
        assert no_failures(result), result
        carried = queue.receive(1)
        assert body_of(carried[0])["run"] == run.id
        result = handlers(margin=1.0)(queue.event(carried), FakeContext(60))
        assert no_failures(result), result
        assert run.result(timeout=5) == list(range(8))
        counts = step_counts(run.id)
        assert len(counts) == 8 and set(counts.values()) == {1}, counts


def test_leases_are_renewed_while_a_run_outlives_its_ttl(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    from worlds.aws._queue import decode

    run = wl.lw_slow.with_options(execute=False).start(5, 0.5)
    messages = queue.receive(1)
    handler = handlers(lease_ttl=1.5)
    results: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: results.append(handler(queue.event(messages), FakeContext(60)))
    )
    thread.start()
    try:
        # Well past the first lease's expiry, another container gets a hint for the run.
        time.sleep(2.0)
        record = world.get_run(run.id)
        assert record.status == "running", record
        assert record.lease_expires_at > world.now(), f"the lease lapsed: {record}"
        hint = decode(messages[0]["Body"], "receipt", 2)
        assert hint is not None
        taken, done = world.take_message(hint, "thief:1:x", 30.0, None)
        assert taken is None and done, "a run whose lease is kept alive was taken over"
    finally:
        thread.join(10)
    assert results == [{"batchItemFailures": []}]
    assert run.result(timeout=5) == list(range(5))
    counts = step_counts(run.id)
    assert len(counts) == 5 and set(counts.values()) == {1}, counts


# -- long sleeps ----------------------------------------------------------------------------------


def test_long_sleep_suspends_with_a_delayed_wake_message(
    world: Any, client: Runtime, queue: Queue, handlers: Callable[..., Any]
) -> None:
    run = wl.lw_nap.with_options(execute=False).start("10 minutes")
    messages = queue.receive(1)
    started = time.monotonic()
    result = handlers()(queue.event(messages), FakeContext(60))
    assert time.monotonic() - started < 5, "the handler waited for the sleep in-process"
    assert no_failures(result), result
    queue.settle(messages, result)

    record = world.get_run(run.id)
    assert record.status == "suspended" and record.lease_owner is None, record
    assert record.wake_at == pytest.approx(world.now() + 600, abs=10), record
    counts = queue.counts()
    assert counts["ApproximateNumberOfMessagesDelayed"] == 1, counts
    assert counts["ApproximateNumberOfMessages"] == 0, counts
    assert queue.receive_now() == []
    assert len(wl.attempts(run.id)) == 1


def test_sleep_longer_than_the_queue_delay_is_chained_until_due(
    moto_endpoint: str, handlers_on: Callable[..., Any]
) -> None:
    # SQS delays a message 15 minutes at most; with max_delay=2 a 6 s sleep needs a chain of
    # wake messages, each one received early and sent again for the rest of the wait.
    world, queue, make = handlers_on(max_delay=2)
    run = wl.lw_nap.with_options(execute=False).start("6s")
    handler = make()
    invocations = 0
    first_wake: float | None = None
    started = time.monotonic()
    while world.get_run(run.id).status != "completed":
        assert time.monotonic() - started < 25, world.get_run(run.id)
        messages = queue.receive_now()
        if not messages:
            time.sleep(0.1)
            continue
        if invocations == 1:
            first_wake = time.monotonic() - started
        invocations += 1
        result = handler(queue.event(messages), FakeContext(60))
        assert no_failures(result), result
        queue.settle(messages, result)
    finished = time.monotonic() - started
    assert run.result(timeout=5) == [1, 2]
    assert first_wake is not None and first_wake >= 1.5, f"first wake after {first_wake}s"
    assert finished >= 5.5, f"woke after {finished:.2f}s, before the sleep ended"
    # The start, then at least two early wake messages, then the one that finished it.
    assert invocations >= 4, invocations
    counts = step_counts(run.id)
    assert len(counts) == 2 and set(counts.values()) == {1}, counts


@pytest.fixture
def handlers_on(
    moto_endpoint: str,
) -> Iterator[Callable[..., tuple[Any, Queue, Callable[[], Any]]]]:
    """A world with custom settings, a client bound to it, and a handler factory for it."""
    opened: list[Any] = []
    runtimes: list[Runtime] = []
    previous = None
    made: list[durable.aws._Handler] = []

    def build(**settings: Any) -> tuple[Any, Queue, Callable[[], Any]]:
        nonlocal previous
        world = open_aws_world(moto_endpoint, **settings)
        opened.append(world)
        runtime = Runtime(world, RuntimeOptions(worker=False))
        runtimes.append(runtime)
        previous = use_runtime(runtime)

        def make() -> durable.aws._Handler:
            handler = durable.aws.make_handler(world.url, [MODULE], margin=1.0)
            made.append(handler)
            return handler

        return world, Queue(moto_endpoint, world.config.queue), make

    try:
        yield build
    finally:
        if runtimes:
            use_runtime(previous)
        for handler in made:
            handler.runtime.stop()
            handler.runtime.world.close()
        for runtime in runtimes:
            runtime.stop()
        for world in opened:
            world.close()


# -- the default handler, configured from the environment ----------------------------------------


def test_default_handler_is_built_once_from_the_environment(
    world: Any, client: Runtime, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_MODULES", f" {MODULE} , ")
    monkeypatch.setenv("DURABLE_WORLD", world.url)
    monkeypatch.setenv("DURABLE_TIME_MARGIN", "1")
    monkeypatch.setattr(durable.aws, "_default", None)
    try:
        first = wl.lw_sum.with_options(execute=False).start(1)
        messages = queue.receive(1)
        result = durable.aws.handler(queue.event(messages), FakeContext(60))
        assert no_failures(result), result
        queue.settle(messages, result)
        built = durable.aws._default
        assert built is not None and built.margin == 1.0
        assert built.runtime.world.url == world.url

        second = wl.lw_slow.with_options(execute=False).start(2, 0.05)
        messages = queue.receive(1)
        result = durable.aws.handler(queue.event(messages), FakeContext(60))
        assert no_failures(result), result
        assert durable.aws._default is built, "the handler was rebuilt for a second invocation"
        assert first.result(timeout=5) == [10, 11, 12]
        assert second.result(timeout=5) == [0, 1]
    finally:
        built = durable.aws._default
        if built is not None:
            built.runtime.stop()
            built.runtime.world.close()
