"""Support for ``bench/aws.py``: a moto server, a request meter on botocore's events, prices.

The meter registers handlers on each client's ``meta.events``:

* ``before-parameter-build.*.*``: one API call (a paginator's pages are one call each), with the
  parameters the world passed, kept until the answer comes;
* ``before-send.*.*``: one HTTP attempt (so retries show up as attempts beyond calls);
* ``after-call.*.*``: the answer (also for errors), from which read sizes, error codes and the
  outcome of conditional writes are taken.

Capacity is estimated, not read from DynamoDB (moto does not report it faithfully): item sizes
follow DynamoDB's rules (attribute names plus values; numbers about half a byte per digit), and a
shadow copy of every run record written through the meter tells the size before an update and
which global secondary index entries a write adds, changes or removes.

Run ``python -m bench.aws_support PORT`` to serve moto on ``127.0.0.1:PORT`` one request at a
time (what ``bench/aws.py`` starts; the same server as ``tests/moto_process.py``).
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"

# -- prices ----------------------------------------------------------------------------------
# On-demand list prices in us-east-1, read 2025 from https://aws.amazon.com/dynamodb/pricing/
# on-demand/ (halved on 1 Nov 2024), https://aws.amazon.com/sqs/pricing/ and
# https://aws.amazon.com/s3/pricing/ (S3 Standard). Free tiers are left out.
DDB_WRU_USD_PER_MILLION = 0.625
"""DynamoDB: USD per million write request units (1 KB standard write; transactional: 2)."""
DDB_RRU_USD_PER_MILLION = 0.125
"""DynamoDB: USD per million read request units (4 KB strongly consistent read)."""
SQS_USD_PER_MILLION = 0.40
"""SQS standard queue: USD per million requests (each 64 KB of payload is one request)."""
S3_PUT_USD_PER_THOUSAND = 0.005
"""S3 Standard: USD per thousand PUT, COPY, POST and LIST requests."""
S3_GET_USD_PER_THOUSAND = 0.0004
"""S3 Standard: USD per thousand GET and other requests (DELETE is free)."""

ASSUMPTIONS = (
    "DynamoDB on-demand us-east-1: $0.625 per million WRU, $0.125 per million RRU (since "
    "1 Nov 2024); SQS $0.40 per million requests; S3 PUT/LIST $0.005 and GET $0.0004 per 1,000.",
    "A transactional write costs 2 WRU per 1 KB of each item (Put/Update/Delete/ConditionCheck; "
    "an update is sized by the larger of the item before and after); a plain write 1 WRU per KB; "
    "a failed conditional write is charged as if it succeeded.",
    "Every global secondary index entry a write adds, changes or removes costs 1 WRU per KB "
    "(a changed index key costs a delete and a put); entries are sized from the projection.",
    "Reads: 1 RRU per 4 KB strongly consistent (0.5 eventually consistent; GSI queries always "
    "are), at least one unit per request; a query is sized by the items it returns (no filters "
    "are used on the measured paths); a GetItem with a projection by the whole item.",
    "Item sizes: attribute name bytes + value bytes (numbers: digits/2 + 1); storage, data "
    "transfer, TTL deletes (free) and free tiers are not counted.",
)

DDB_WRITES = frozenset(
    {"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
)
"""DynamoDB operations counted as write requests."""
DDB_READS = frozenset(
    {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
)
"""DynamoDB operations counted as read requests."""
_S3_PUT_TIER = frozenset(
    {"PutObject", "CopyObject", "PostObject", "ListObjects", "ListObjectsV2", "ListBuckets",
     "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
)
_S3_FREE = frozenset({"DeleteObject", "DeleteObjects"})

# -- the moto server -------------------------------------------------------------------------


def fake_credentials() -> None:
    """Point boto3 at fake credentials and the bench's region (this process only)."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_SESSION_TOKEN"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[str, subprocess.Popen[bytes]]:
    """Start a moto server in a child process; returns its URL and the process."""
    fake_credentials()
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.aws_support", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        process.kill()
        raise RuntimeError("the moto server did not start (pip install 'moto[server]')")
    return f"http://127.0.0.1:{port}", process


def stop_moto(process: subprocess.Popen[bytes]) -> None:
    """Stop the server started by :func:`start_moto`."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def serve(port: int) -> None:
    """Serve moto on 127.0.0.1:``port``, one request at a time (moto is not thread-safe)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler
    )
    print("ready", flush=True)
    server.serve_forever()


@dataclass(frozen=True)
class Setup:
    """Clients for creating and removing resources (not metered)."""

    endpoint: str
    dynamodb: Any
    sqs: Any
    s3: Any


def setup_clients(endpoint: str) -> Setup:
    """Clients on the moto server for the bench's own housekeeping."""
    import boto3

    session = boto3.session.Session(region_name=REGION)
    return Setup(
        endpoint,
        session.client("dynamodb", endpoint_url=endpoint),
        session.client("sqs", endpoint_url=endpoint),
        session.client("s3", endpoint_url=endpoint),
    )


def create_table(setup: Setup, name: str) -> None:
    """Create a world's table, as ``durable bootstrap`` would."""
    from worlds.aws._schema import table_definition

    setup.dynamodb.create_table(**table_definition(name))


def delete_table(setup: Setup, name: str) -> None:
    """Remove a table (moto keeps every table in memory)."""
    setup.dynamodb.delete_table(TableName=name)


def create_resources(setup: Setup, prefix: str, **settings: Any) -> Any:
    """The table, queue and bucket of a world; returns its config.

    Settings not given are ``AwsConfig``'s defaults (e.g. a worker sweeps the due index every
    15 s), unlike the tests', which sweep on every poll.
    """
    from worlds.aws._config import AwsConfig

    config = AwsConfig(prefix=prefix, region=REGION, endpoint_url=setup.endpoint, **settings)
    create_table(setup, config.table)
    setup.sqs.create_queue(
        QueueName=config.queue,
        Attributes={"VisibilityTimeout": str(config.visibility_timeout)},
    )
    setup.s3.create_bucket(Bucket=config.bucket)
    return config


# -- item sizes and the index model ----------------------------------------------------------

_KB = 1024
_READ_UNIT = 4096


def number_size(text: str) -> int:
    """Bytes DynamoDB counts for a number: about one per two significant digits, plus one."""
    digits = text.lstrip("+-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value (``{"S": ...}``, ``{"N": ...}``, ...)."""
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return number_size(raw)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    if kind == "NS":
        return sum(number_size(n) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    """Bytes of an item: attribute names plus values."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write units of one item write (at least one)."""
    return max(1, math.ceil(size / _KB))


def read_units(size: int, consistent: bool) -> float:
    """Read units of one read of ``size`` bytes (at least one 4 KB unit)."""
    units = max(1, math.ceil(size / _READ_UNIT))
    return float(units) if consistent else units / 2


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str
    non_key: tuple[str, ...] = ()

    def entry(self, item: dict[str, Any] | None, table_keys: tuple[str, ...]) -> (
        dict[str, Any] | None
    ):
        """The index entry ``item`` has (``None`` when it lacks an index key)."""
        if item is None or any(k not in item for k in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = set(table_keys) | set(self.keys)
        if self.projection == "INCLUDE":
            names |= set(self.non_key)
        return {k: v for k, v in item.items() if k in names}


def indexes_of(definition: dict[str, Any]) -> tuple[tuple[str, ...], list[Index]]:
    """The table's key attributes and its indexes, from ``CreateTable`` arguments."""
    table_keys = tuple(k["AttributeName"] for k in definition["KeySchema"])
    indexes = []
    for gsi in definition.get("GlobalSecondaryIndexes", []):
        projection = gsi["Projection"]
        indexes.append(
            Index(
                gsi["IndexName"],
                tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection["ProjectionType"],
                tuple(projection.get("NonKeyAttributes", ())),
            )
        )
    return table_keys, indexes


def index_writes(
    before: dict[str, Any] | None, after: dict[str, Any] | None,
    table_keys: tuple[str, ...], indexes: list[Index],
) -> tuple[int, int]:
    """Index entry writes and their write units when an item goes from ``before`` to ``after``."""
    writes = units = 0
    for index in indexes:
        old = index.entry(before, table_keys)
        new = index.entry(after, table_keys)
        if old is None and new is None:
            continue
        if old is None or new is None:
            writes += 1
            units += write_units(item_size(old if new is None else new))
        elif any(old[k] != new[k] for k in index.keys):
            writes += 2  # the entry moves: a delete and a put
            units += write_units(item_size(old)) + write_units(item_size(new))
        elif old != new:
            writes += 1
            units += write_units(item_size(new))
    return writes, units


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b")


def apply_update(
    item: dict[str, Any], expression: str, names: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """``item`` after an ``UpdateExpression`` of the simple forms the world writes.

    Handles ``SET #a = :v``, ``REMOVE #a``, ``ADD #a :v`` (numbers, sets) and ``DELETE #a :v``.
    """
    result = dict(item)
    parts = _CLAUSE.split(expression)
    for verb, body in zip(parts[1::2], parts[2::2], strict=True):
        for clause in (c.strip() for c in body.split(",")):
            if not clause:
                continue
            if verb == "REMOVE":
                result.pop(names.get(clause, clause), None)
                continue
            target, _, operand = clause.replace("=", " ").partition(" ")
            name = names.get(target, target)
            value = values.get(operand.strip())
            if value is None:
                continue  # not a plain value (a function): leave the attribute as it was
            if verb == "SET":
                result[name] = value
            elif verb == "ADD":
                result[name] = _add(result.get(name), value)
            else:
                result[name] = _remove_elements(result.get(name), value)
                if result[name] is None:
                    del result[name]
    return result


def _add(current: dict[str, Any] | None, value: dict[str, Any]) -> dict[str, Any]:
    if "N" in value:
        base = float(current["N"]) if current else 0.0
        total = base + float(value["N"])
        return {"N": str(int(total)) if total.is_integer() else repr(total)}
    (kind, raw), = value.items()
    existing = current[kind] if current else []
    return {kind: sorted(set(existing) | set(raw))}


def _remove_elements(
    current: dict[str, Any] | None, value: dict[str, Any]
) -> dict[str, Any] | None:
    if not current:
        return None
    (kind, raw), = value.items()
    left = sorted(set(current[kind]) - set(raw))
    return {kind: left} if left else None


# -- the meter -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one bucket of requests cost."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    """API calls per (service, operation)."""
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """HTTP attempts per (service, operation): calls plus retries."""
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Error answers per (service, operation, code)."""
    table_wru: float = 0.0
    """Write units of table items."""
    index_wru: float = 0.0
    """Write units of global secondary index entries."""
    index_writes: int = 0
    """Index entries written (a moved entry counts twice)."""
    rru: float = 0.0
    """Read units."""
    s3_put: int = 0
    """S3 requests at the PUT/LIST price."""
    s3_get: int = 0
    """S3 requests at the GET price."""

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts to this one."""
        self.calls.update(other.calls)
        self.attempts.update(other.attempts)
        self.errors.update(other.errors)
        self.table_wru += other.table_wru
        self.index_wru += other.index_wru
        self.index_writes += other.index_writes
        self.rru += other.rru
        self.s3_put += other.s3_put
        self.s3_get += other.s3_get

    def requests(self, service: str | None = None, ops: frozenset[str] | None = None) -> int:
        """API calls, optionally of one service and a set of operations."""
        return sum(
            n for (svc, op), n in self.calls.items()
            if (service is None or svc == service) and (ops is None or op in ops)
        )

    def sqs_requests(self) -> int:
        """SQS requests (each is billed; our messages are far below 64 KB)."""
        return self.requests("sqs")

    def cost_usd(self) -> dict[str, float]:
        """Estimated cost of this bucket's requests, per service."""
        return {
            "dynamodb writes": (self.table_wru + self.index_wru) * DDB_WRU_USD_PER_MILLION / 1e6,
            "dynamodb reads": self.rru * DDB_RRU_USD_PER_MILLION / 1e6,
            "sqs": self.sqs_requests() * SQS_USD_PER_MILLION / 1e6,
            "s3": self.s3_put * S3_PUT_USD_PER_THOUSAND / 1e3
            + self.s3_get * S3_GET_USD_PER_THOUSAND / 1e3,
        }


Classifier = Any
"""``(service, operation, parsed answer, thread name) -> bucket name``."""


def by_thread(service: str, op: str, parsed: dict[str, Any], thread: str) -> str:
    """Buckets: ``run`` (the caller and branch threads), and for the embedded worker's thread
    ``idle`` (polls that found nothing, index sweeps) or ``deferred`` (acting on a message)."""
    if not thread.startswith("durable-worker"):
        return "run"
    if op in ("Query", "Scan"):
        return "idle"
    if op == "ReceiveMessage" and not parsed.get("Messages"):
        return "idle"
    return "deferred"


class Meter:
    """Counts the requests of a world's clients and estimates their capacity."""

    def __init__(self, classify: Classifier = by_thread) -> None:
        from worlds.aws._schema import table_definition

        self._classify = classify
        self._table_keys, self._indexes = indexes_of(table_definition("any"))
        self._lock = threading.Lock()
        self._shadow: dict[tuple[str, str], dict[str, Any]] = {}
        self._call = threading.local()
        self.buckets: dict[str, Tally] = {}
        self.started = time.monotonic()

    def attach(self, *clients: Any) -> None:
        """Register on each client's events (every call made through them is counted)."""
        for client in clients:
            events = client.meta.events
            events.register("before-parameter-build.*.*", self._before_call)
            events.register("before-send.*.*", self._before_send)
            events.register("after-call.*.*", self._after_call)

    def reset(self) -> None:
        """Forget the counts (not the run records seen), and restart the clock."""
        with self._lock:
            self.buckets = {}
            self.started = time.monotonic()

    def take(self, *names: str) -> Tally:
        """The sum of the named buckets so far."""
        total = Tally()
        with self._lock:
            for name in names:
                if name in self.buckets:
                    total.add(self.buckets[name])
        return total

    # -- handlers ------------------------------------------------------------------------------

    def _bucket(self, name: str) -> Tally:
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = Tally()
        return bucket

    # A call runs on one thread from its parameters to its answer, so per-thread state links
    # the three events of one call.

    def _before_call(self, params: dict[str, Any], **_: Any) -> None:
        self._call.params = params
        self._call.attempts = 0

    def _before_send(self, **_: Any) -> None:
        self._call.attempts = getattr(self._call, "attempts", 0) + 1

    def _after_call(self, http_response: Any, parsed: dict[str, Any], model: Any,
                    **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        op = model.name
        params: dict[str, Any] = getattr(self._call, "params", None) or {}
        attempts = max(1, getattr(self._call, "attempts", 1))
        self._call.params = None
        key = (service, op)
        thread = threading.current_thread().name
        ok = http_response.status_code < 300
        with self._lock:
            tally = self._bucket(self._classify(service, op, parsed, thread))
            tally.calls[key] += 1
            tally.attempts[key] += attempts
            if not ok:
                tally.errors[(service, op, str(parsed.get("Error", {}).get("Code", "?")))] += 1
            if service == "dynamodb":
                self._dynamodb(tally, op, params, parsed, ok)
            elif service == "s3" and op not in _S3_FREE:
                if op in _S3_PUT_TIER:
                    tally.s3_put += 1
                else:
                    tally.s3_get += 1

    # -- DynamoDB capacity ---------------------------------------------------------------------

    def _dynamodb(
        self, tally: Tally, op: str, params: dict[str, Any], parsed: dict[str, Any], ok: bool
    ) -> None:
        if op == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                (kind, args), = entry.items()
                self._write(tally, kind, args, ok, transactional=True)
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self._write(tally, op[: -len("Item")], params, ok, transactional=False)
        elif op == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        self._write(tally, "Put", request["PutRequest"], ok, False)
                    else:
                        self._write(tally, "Delete", request["DeleteRequest"], ok, False)
        elif op in DDB_READS:
            tally.rru += self._read_units(op, params, parsed)

    def _key(self, args: dict[str, Any]) -> tuple[str, str]:
        source = args.get("Key") or args.get("Item") or {}
        pk, sk = (source.get(name, {}) for name in self._table_keys)
        return str(next(iter(pk.values()), "")), str(next(iter(sk.values()), ""))

    def _write(
        self, tally: Tally, kind: str, args: dict[str, Any], ok: bool, transactional: bool
    ) -> None:
        key = self._key(args)
        before = self._shadow.get(key)
        after: dict[str, Any] | None
        if kind == "Put":
            after = dict(args["Item"])
        elif kind == "Update":
            after = apply_update(
                before or dict(args["Key"]), args["UpdateExpression"],
                args.get("ExpressionAttributeNames", {}),
                args.get("ExpressionAttributeValues", {}),
            )
        elif kind == "Delete":
            after = None
        else:  # ConditionCheck
            after = before
        size = max(item_size(before), item_size(after)) or _KB
        tally.table_wru += write_units(size) * (2 if transactional else 1)
        if not ok or kind == "ConditionCheck":
            return
        writes, units = index_writes(before, after, self._table_keys, self._indexes)
        tally.index_writes += writes
        tally.index_wru += units
        # Only items that carry index keys need remembering (run records); events never change.
        if after is not None and any(index.entry(after, self._table_keys) for index in
                                     self._indexes):
            self._shadow[key] = after
        elif after is None or before is not None:
            self._shadow.pop(key, None)

    def _read_units(self, op: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
        if op == "GetItem":
            full = self._shadow.get(self._key(params))
            size = item_size(full) if full is not None else item_size(parsed.get("Item"))
            return read_units(size, consistent)
        if op in ("Query", "Scan"):
            items = parsed.get("Items")
            if items is None:  # Select=COUNT: size the items counted at a typical 256 bytes
                size = int(parsed.get("ScannedCount", 0)) * 256
            else:
                size = sum(item_size(item) for item in items)
            return read_units(size, consistent)
        if op == "TransactGetItems":
            return sum(
                2 * read_units(item_size(r.get("Item")), True)
                for r in parsed.get("Responses", [])
            )
        return sum(  # BatchGetItem
            read_units(item_size(item), consistent)
            for items in parsed.get("Responses", {}).values()
            for item in items
        )


if __name__ == "__main__":
    serve(int(sys.argv[1]))
