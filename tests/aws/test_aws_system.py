"""The AWS world as a system, through boto3 against a real moto HTTP endpoint (nothing patched).

* 1 MB payloads in and out: input, step result, hook payload, stream chunk and output go to S3
  and every DynamoDB item stays small.
* A 20-minute sleep woken only by SQS: with ``max_delay=1`` and a clock that runs 600 times
  faster than real time, the wake-up is a chain of delayed messages, each received early and
  sent again for the rest of the wait.
* Throttling and 5xx answers injected at the HTTP layer (``faulty_proxy.FaultyProxy``): boto3
  retries them, and every run completes with each step executed and recorded once.
* An outage that outlasts the retries: a transient ``WorldError`` that says what happened, and
  nothing recorded is lost once the service is back; the embedded worker lives through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

import durable
from durable import WorldError, step, workflow
from durable._serialization import loads
from durable._streams import decode_chunk
from durable.world import Event
from tests.aws.faulty_proxy import FaultyProxy
from tests.aws_server import create_world_resources, open_aws_world, running

boto3 = pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402

from worlds.aws import AwsWorld  # noqa: E402
from worlds.aws._clients import Clients  # noqa: E402
from worlds.aws._config import AwsConfig  # noqa: E402
from worlds.aws._errors import translate  # noqa: E402
from worlds.aws._schema import run_key  # noqa: E402

MB = 1 << 20
DYNAMODB_ITEM_LIMIT = 400 * 1024

calls: Counter[str] = Counter()
_calls_lock = threading.Lock()


def hit(name: str) -> None:
    with _calls_lock:
        calls[name] += 1


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    calls.clear()
    yield


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def assert_complete_log(events: list[Event], steps: list[str]) -> None:
    """Consecutive seqs from 1, created and completed once, each step recorded exactly once."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), events
    kinds = Counter(e.kind for e in events)
    assert kinds["run_created"] == 1 and kinds["run_completed"] == 1, kinds
    assert events[0].kind == "run_created" and events[-1].kind == "run_completed", kinds
    assert not kinds["run_failed"] and not kinds["step_failed"], kinds
    completed = [e.name for e in events if e.kind == "step_completed"]
    assert completed == steps, completed


# -- 1 MB payloads -------------------------------------------------------------------------------


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@step
def transform(data: bytes) -> bytes:
    hit("transform")
    durable.stream("blob").write(data[: MB // 2] * 2)
    return data[::-1]


@workflow(name="aws_system.big_payloads")
def big_payloads(data: bytes) -> bytes:
    reversed_data = transform(data)
    payload: bytes = durable.create_hook(token=f"big:{digest(data).hex()[:12]}").wait()
    # Computed after the hook, so after a replay that read everything back from S3.
    return digest(data) + digest(reversed_data) + payload[::-1]


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it (names plus values), close enough for a limit."""

    def value_size(value: dict[str, Any]) -> int:
        kind, inner = next(iter(value.items()))
        if kind in ("S", "N"):
            return len(str(inner).encode())
        if kind == "B":
            return len(inner)
        if kind in ("SS", "NS"):
            return sum(len(str(v).encode()) for v in inner)
        if kind == "BS":
            return sum(len(v) for v in inner)
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(v) for k, v in inner.items())
        if kind == "L":
            return 3 + sum(1 + value_size(v) for v in inner)
        return 1

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def test_megabyte_payloads_go_through_s3_and_items_stay_small(moto_endpoint: str):
    world = open_aws_world(moto_endpoint)
    data = os.urandom(MB)
    payload = os.urandom(MB)
    fetched: list[str] = []
    world.clients.s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: fetched.append(params["Key"])
    )
    with running(world):
        run = big_payloads.start(data)
        token = wait_until(lambda: world.list_hooks(run.id), 15, "the hook")[0].token
        wait_until(lambda: run.status == "suspended", 15, "the run to suspend on its hook")
        durable.resume_hook(token, payload)
        result = run.result(timeout=30)
        fetched_for_result = set(fetched)
        chunks = list(run.stream("blob", timeout=10))
        events = run.events()

    assert result == digest(data) + digest(data[::-1]) + payload[::-1]
    assert chunks == [data[: MB // 2] * 2]
    assert calls["transform"] == 1  # the replay after the hook read its result back
    kinds = [e.kind for e in events]
    assert kinds.count("step_completed") == 1 and kinds.count("hook_received") == 1, kinds
    for event in events:
        if event.kind in ("step_completed", "hook_received"):
            assert event.data is not None and len(event.data) > MB, event.kind

    # What is stored: small items, with the large payloads as S3 keys in "<name>3" attributes.
    clients = Clients(world.config)
    try:
        items: list[dict[str, Any]] = []
        for page in clients.dynamodb.get_paginator("scan").paginate(TableName=world.table):
            items.extend(page["Items"])
        sizes = {(i["pk"]["S"], i["sk"]["S"]): item_size(i) for i in items}
        assert max(sizes.values()) < DYNAMODB_ITEM_LIMIT, sizes
        assert max(sizes.values()) < 8 * 1024, sizes  # nothing large stayed inline
        refs = {
            (item["sk"]["S"], name): value["S"]
            for item in items
            for name, value in item.items()
            if name.endswith("3") and "S" in value
        }
        listed = clients.s3.list_objects_v2(
            Bucket=world.config.bucket, Prefix=f"{world.config.prefix}/payloads/{run.id}/"
        )
        stored = {obj["Key"] for obj in listed.get("Contents", [])}
        assert set(refs.values()) <= stored, (refs, sorted(stored))
        # Each referenced object is one of the five payloads, whichever item points to it.
        expected: dict[str, Any] = {
            "input": {"args": [data], "kwargs": {}},
            "step result": data[::-1],
            "hook payload": payload,
            "output": result,
        }
        found: dict[str, tuple[str, str]] = {}  # what -> (sort key of its item, S3 key)
        for (sk, _), key in refs.items():
            body = clients.s3.get_object(Bucket=world.config.bucket, Key=key)["Body"].read()
            assert len(body) > world.config.payload_threshold, (sk, len(body))
            if sk.startswith("c#blob#"):
                assert decode_chunk(body) == data[: MB // 2] * 2
                found["chunk"] = (sk, key)
                continue
            value = loads(body)
            what = next((name for name, v in expected.items() if v == value), repr(value)[:60])
            assert what not in found, (what, sk, found)
            found[what] = (sk, key)
        assert set(found) == {"input", "step result", "hook payload", "output", "chunk"}, found
        assert len(refs) == len(found), refs
        event_sks = {f"e#{e.seq:012d}": e.kind for e in events}
        assert event_sks.get(found["step result"][0]) == "step_completed", found
        assert event_sks.get(found["hook payload"][0]) == "hook_received", found
        # Resuming replayed the run from what was stored: input, step result and hook payload
        # came back from S3 (and the output, for run.result()).
        keys = {key for what, (_, key) in found.items() if what != "chunk"}
        assert keys <= fetched_for_result, (found, fetched_for_result)
    finally:
        clients.close()


# -- a 20-minute sleep chained through SQS ---------------------------------------------------------

SPEEDUP = 600.0
"""World seconds per real second: 20 world minutes take 2 real seconds."""
SLEEP = 20 * 60.0


def fast_clock() -> Callable[[], float]:
    start, t0 = time.time(), time.monotonic()
    return lambda: start + (time.monotonic() - t0) * SPEEDUP


@step
def before_sleep() -> int:
    hit("before_sleep")
    return durable.step_info().attempt


@step
def after_sleep() -> str:
    hit("after_sleep")
    return "awake"


@workflow(name="aws_system.long_nap")
def long_nap() -> str:
    before_sleep()
    durable.sleep("20 minutes")
    return after_sleep()


def test_twenty_minute_sleep_is_woken_by_a_chain_of_sqs_messages(moto_endpoint: str):
    # No sweep of the due index after the first: only an SQS message can wake the run.
    world = open_aws_world(moto_endpoint, clock=fast_clock(), max_delay=1, sweep_interval=3600.0)
    sends: list[tuple[float, dict[str, Any], int]] = []
    due_queries: list[float] = []

    def on_send(params: dict[str, Any], **_: Any) -> None:
        sends.append((world.now(), json.loads(params["MessageBody"]), params["DelaySeconds"]))

    def on_query(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == "by_due":
            due_queries.append(world.now())

    world.clients.sqs.meta.events.register("provide-client-params.sqs.SendMessage", on_send)
    world.clients.dynamodb.meta.events.register("provide-client-params.dynamodb.Query", on_query)

    # Leases are in world seconds: 36,000 of them last a minute of real time.
    with running(world, lease_ttl=36_000.0, poll_interval=0.05):
        started = time.monotonic()
        run = long_nap.start()
        result = run.result(timeout=20)
        elapsed = time.monotonic() - started
        events = run.events()
        record = run.record

    assert result == "awake"
    assert calls == {"before_sleep": 1, "after_sleep": 1}
    assert record.status == "completed"
    assert_complete_log(events, ["before_sleep", "after_sleep"])
    sleep = next(e for e in events if e.kind == "sleep_started")
    assert sleep.data is not None
    wake_at = json.loads(sleep.data)["wake_at"]
    # The wake-up time is computed a moment before the event is stamped: on the fast clock a
    # busy machine's few milliseconds are world seconds, so allow a tenth of a real second.
    assert SLEEP - 0.1 * SPEEDUP <= wake_at - sleep.created_at <= SLEEP + 1.0
    # Nothing after the sleep was recorded before its (world) time came.
    assert all(e.created_at >= wake_at for e in events[sleep.seq :]), events
    assert elapsed >= SLEEP / SPEEDUP * 0.9, elapsed

    wakes = [(at, body, delay) for at, body, delay in sends
             if body["run"] == run.id and body["kind"] == "wake"]
    # The first wake-up is sent when the run suspends; each early receive sends the next.
    assert len(wakes) >= 2, sends
    assert all(body["at"] == wake_at for _, body, _ in wakes), wakes
    assert all(delay <= 1 for _, _, delay in sends), sends
    # The worker's one sweep of the due index was over before the run was due: SQS woke it.
    assert due_queries and max(due_queries) < wake_at, (due_queries, wake_at)


# -- throttling and 5xx at the HTTP layer ----------------------------------------------------------

STEPS = ["s1", "s2", "s3", "s4", "s5"]
BIG = 70 * 1024  # over the 64 KiB threshold: S3 is in the path too


@step(name="s1")
def s1(n: int) -> int:
    hit(f"{durable.step_info().run_id}:s1")
    return n + 1


@step(name="s2")
def s2(n: int) -> int:
    hit(f"{durable.step_info().run_id}:s2")
    return n * 2


@step(name="s3")
def s3(n: int) -> str:
    hit(f"{durable.step_info().run_id}:s3")
    return str(n % 10) * BIG


@step(name="s4")
def s4(text: str) -> int:
    hit(f"{durable.step_info().run_id}:s4")
    return len(text)


@step(name="s5")
def s5(a: int, b: int, c: int) -> int:
    hit(f"{durable.step_info().run_id}:s5")
    return a + b + c


@workflow(name="aws_system.flaky_five")
def flaky_five(n: int) -> int:
    a = s1(n)
    b = s2(a)
    c = s4(s3(b))
    return s5(n, b, c)


def expected_five(n: int) -> int:
    return n + (n + 1) * 2 + BIG


def test_the_proxy_answers_as_a_throttled_or_failing_aws_would(moto_endpoint: str):
    from botocore.config import Config

    config = create_world_resources(moto_endpoint)
    session = boto3.session.Session(region_name=config.region)
    with FaultyProxy(moto_endpoint, every=1, max_failures=None) as proxy:

        def client(service: str, attempts: int) -> Any:
            retries = {"mode": "standard", "total_max_attempts": attempts}
            return session.client(service, endpoint_url=proxy.url, config=Config(retries=retries))

        ddb, sqs, s3 = (client(name, 1) for name in ("dynamodb", "sqs", "s3"))
        queue = f"{moto_endpoint}/123456789012/{config.queue}"
        calls_by_service: dict[str, Callable[[], Any]] = {
            "dynamodb": lambda: ddb.get_item(TableName=config.table, Key=run_key("x")),
            "sqs": lambda: sqs.send_message(QueueUrl=queue, MessageBody="{}"),
            "s3": lambda: s3.put_object(Bucket=config.bucket, Key="k", Body=b"x"),
        }
        seen = set()
        for call in calls_by_service.values():
            for _ in range(2):
                with pytest.raises(ClientError) as caught:
                    call()
                error = caught.value.response
                seen.add((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]))
                # What the world makes of it once boto3's retries are spent.
                assert translate(caught.value, "testing").transient, error
        assert seen == {
            (400, "ThrottlingException"), (500, "InternalServerError"),
            (400, "RequestThrottled"), (503, "ServiceUnavailable"),
            (503, "SlowDown"), (500, "InternalError"),
        }
        assert proxy.forwarded == {}

        # A failed attempt's retry goes through (max_failures=1), and is forwarded as it came.
        proxy.set_faults(1, max_failures=1)
        retrying = client("s3", 2)
        retrying.put_object(Bucket=config.bucket, Key="big", Body=b"y" * 200_000)
        proxy.set_faults(0)
        body = client("s3", 1).get_object(Bucket=config.bucket, Key="big")["Body"].read()
        assert body == b"y" * 200_000
        assert proxy.injected == {"dynamodb": 2, "sqs": 2, "s3": 3}, proxy.injected
        assert proxy.forwarded == {"s3": 2}, proxy.forwarded


def world_behind(proxy: FaultyProxy, config: AwsConfig, max_attempts: int = 10) -> AwsWorld:
    """An AWS world whose clients all go through the proxy (resources made directly on moto)."""
    proxied = replace(config, endpoint_url=proxy.url)
    return AwsWorld("aws://", config=proxied, clients=Clients(proxied, max_attempts))


def test_throttling_and_server_errors_are_retried_without_losing_or_repeating_work(
    moto_endpoint: str,
):
    # The worker claims runs one request after another, and a failed request waits up to a
    # second before its retry: so the worker sweeps the due index (24 queries) once, before
    # the faults start, and takes the runs left to it from SQS.
    config = create_world_resources(moto_endpoint, sweep_interval=3600.0)
    runs = 20
    with FaultyProxy(moto_endpoint, every=0) as proxy:
        world = world_behind(proxy, config)
        with running(world, max_concurrent_runs=runs) as runtime:
            runtime.ensure_worker()
            # GetQueueUrl, then a receive after each sweep (claim, then next due time).
            wait_until(lambda: proxy.forwarded["sqs"] >= 3, 10, "the worker's first polls")
            proxy.set_faults(3)

            # Every 4th run is left to the worker (a "start" message in SQS); the others run
            # here at once. Started from threads: a start waiting out a retry holds up no other.
            def start(n: int) -> durable.Run:
                return flaky_five.with_options(execute=n % 4 != 3).start(n)

            with ThreadPoolExecutor(runs) as pool:
                started = list(pool.map(start, range(runs)))
            # One waiter: twenty polling threads would keep the (serial) moto server busy.
            results = {run.id: run.result(timeout=30) for run in started}
            assert runtime.fatal_error is None
        injected = dict(proxy.injected)

    assert results == {run.id: expected_five(n) for n, run in enumerate(started)}
    # Each step ran exactly once per run: no retry of a request repeated a step.
    assert calls == Counter(f"{run.id}:{name}" for run in started for name in STEPS)
    # The proxy did fail requests of every service (and they were retried).
    assert injected.get("dynamodb", 0) > 10 and injected.get("sqs", 0) > 0, injected
    assert injected.get("s3", 0) > 0, injected

    checker = open_aws_world(moto_endpoint, config=config)
    try:
        for run in started:
            record = checker.get_run(run.id)
            assert record is not None and record.status == "completed", record
            assert record.lease_owner is None, record
            assert_complete_log(checker.read_events(run.id), STEPS)
        assert checker.count_runs() == {"completed": runs}
    finally:
        checker.close()


# -- an outage that outlasts the retries -----------------------------------------------------------


@step
def first(order: str) -> str:
    hit("first")
    return f"{order}:1"


@step
def second(order: str) -> str:
    hit("second")
    return f"{order}:2"


@step
def third(order: str, decision: str) -> str:
    hit("third")
    return f"{order}:3:{decision}"


@workflow(name="aws_system.approval")
def approval(order: str) -> list[str]:
    done = [first(order), second(order)]
    decision = durable.create_hook(token=f"approve:{order}").wait()
    return [*done, third(order, decision)]


def suspend_on_hook(world: AwsWorld, order: str) -> durable.Run:
    """Start an approval and wait until it is suspended on its hook."""
    run = approval.start(order)
    wait_until(lambda: world.list_hooks(run.id), 15, "the hook")
    wait_until(lambda: run.status == "suspended", 15, "the run to suspend on its hook")
    return run


def test_a_persistent_dynamodb_outage_is_a_transient_world_error_and_loses_nothing(
    moto_endpoint: str,
):
    config = create_world_resources(moto_endpoint)
    with FaultyProxy(moto_endpoint, every=0) as proxy:
        # One retry only, so each failing call gives up within about a second.
        world = world_behind(proxy, config, max_attempts=1)
        try:
            with running(world, close=False):
                run = suspend_on_hook(world, "A7")
            before = world.read_events(run.id)
            assert [e.name for e in before if e.kind == "step_completed"] == ["first", "second"]

            proxy.set_faults(1, services=["dynamodb"], max_failures=None)
            forwarded = proxy.forwarded["dynamodb"]
            with pytest.raises(WorldError) as caught:
                world.get_run(run.id)
            error = caught.value
            assert error.transient, error
            message = str(error)
            assert f"reading run {run.id}" in message, message
            assert "throttling or failing requests" in message, message
            assert "nothing was lost" in message, message
            with running(world, close=False, worker=False), pytest.raises(WorldError) as resumed:
                durable.resume_hook("approve:A7", "yes")
            assert resumed.value.transient, resumed.value
            assert proxy.forwarded["dynamodb"] == forwarded  # the outage was total
            assert proxy.injected["dynamodb"] >= 4, proxy.injected  # 2 calls, 2 attempts each

            proxy.set_faults(0)
            assert world.read_events(run.id) == before
            assert world.get_run(run.id).status == "suspended"  # type: ignore[union-attr]
            with running(world, close=False):
                durable.resume_hook("approve:A7", "yes")
                assert durable.get_run(run.id).result(timeout=20) == ["A7:1", "A7:2", "A7:3:yes"]
            events = world.read_events(run.id)
        finally:
            world.close()

    assert events[: len(before)] == before
    assert_complete_log(events, ["first", "second", "third"])
    assert calls == {"first": 1, "second": 1, "third": 1}


def test_the_embedded_worker_outlives_a_dynamodb_outage(moto_endpoint: str):
    config = create_world_resources(moto_endpoint)
    with FaultyProxy(moto_endpoint, every=0) as proxy:
        world = world_behind(proxy, config, max_attempts=1)
        with running(world) as runtime:
            run = suspend_on_hook(world, "B8")
            proxy.set_faults(1, services=["dynamodb"], max_failures=None)
            # Only the idle worker talks to DynamoDB now: let its polls fail for a while.
            wait_until(lambda: proxy.injected["dynamodb"] >= 2, 10, "the worker's failed polls")
            time.sleep(1.0)
            proxy.set_faults(0)
            assert runtime.fatal_error is None, runtime.fatal_error
            durable.resume_hook("approve:B8", "ok")
            assert run.result(timeout=4) == ["B8:1", "B8:2", "B8:3:ok"]
    assert calls == {"first": 1, "second": 1, "third": 1}
