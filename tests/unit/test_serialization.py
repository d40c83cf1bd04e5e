"""Tests for durable._serialization."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import threading
import uuid
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pydantic
import pytest

from durable._errors import NonDeterminismError, RetryableError, SerializationError
from durable._serialization import dumps, error_from_dict, error_to_dict, loads

# Helper types live at module level so the serializer can import them back.


class Color(enum.Enum):
    """A plain Enum."""

    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    """An IntEnum, which json alone would write as a bare int."""

    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    """A StrEnum, which json alone would write as a bare str."""

    FAST = "fast"


class Perm(enum.Flag):
    """A Flag, whose combined members have no single name."""

    R = 1
    W = 2


class Outer:
    """Holds a nested Enum, to test dotted qualnames."""

    class Inner(enum.Enum):
        """A nested Enum with a tuple value."""

        A = (1, 2)


@dataclasses.dataclass
class Item:
    """A simple dataclass."""

    sku: str
    qty: int = 1


@dataclasses.dataclass(frozen=True)
class Money:
    """A frozen (hashable) dataclass holding a Decimal."""

    amount: Decimal
    currency: str


@dataclasses.dataclass(slots=True)
class Order:
    """A slotted dataclass nesting other dataclasses and tagged types."""

    id: uuid.UUID
    items: list[Item]
    total: Money
    created: dt.datetime
    tags: set[str] = dataclasses.field(default_factory=set)
    computed: int = dataclasses.field(init=False, default=0)


class Point(NamedTuple):
    """A named tuple."""

    x: int
    y: int


class Address(pydantic.BaseModel):
    """A pydantic model with an aliased field."""

    city: str
    zip_code: str = pydantic.Field(alias="zipCode")


class User(pydantic.BaseModel):
    """A pydantic model nesting another model and non-JSON types."""

    id: uuid.UUID
    name: str
    joined: dt.datetime
    address: Address
    scores: tuple[int, ...] = ()
    meta: dict[str, Any] = {}


class StrictModel(pydantic.BaseModel):
    """A strict pydantic model, which refuses strings for datetimes in Python mode."""

    model_config = pydantic.ConfigDict(strict=True)

    when: dt.datetime
    blob: bytes


class Unknown:
    """An arbitrary class with no JSON form."""


class PaymentDeclined(Exception):
    """A user exception with two arguments and a custom message."""

    def __init__(self, code: str, amount: int) -> None:
        """Record the code and amount."""
        super().__init__(code, amount)
        self.code = code
        self.amount = amount

    def __str__(self) -> str:
        """Describe the decline."""
        return f"declined {self.code} for {self.amount}"


class WithReduce(Exception):
    """A user exception whose keyword-only option is carried by ``__reduce__``."""

    def __init__(self, message: str, *, retry_in: float = 0.0) -> None:
        """Record the message and delay."""
        super().__init__(message)
        self.retry_in = retry_in

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild through a factory function."""
        return (_make_with_reduce, (str(self), self.retry_in))


def _make_with_reduce(message: str, retry_in: float) -> WithReduce:
    return WithReduce(message, retry_in=retry_in)


class Tagged(Exception):
    """Carries an extra attribute that only lives in ``__dict__``."""


def assert_same(a: object, b: object) -> None:
    """Equal, and of the same type all the way down."""
    assert type(a) is type(b), (a, b)
    assert a == b
    if isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for k in a:
            bk = next(x for x in b if x == k)
            assert_same(k, bk)
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))


def roundtrip(value: object, **kwargs: Any) -> object:
    """Dump and load a value."""
    return loads(dumps(value, **kwargs))


UTC = dt.UTC

def _stable_id(value: object) -> str:
    """A test id that does not depend on the hash seed (xdist workers must agree on ids)."""
    if isinstance(value, (set, frozenset)):
        inner = ", ".join(sorted(repr(item) for item in value))
        return f"{type(value).__name__}({{{inner}}})"
    return repr(value)


ROUND_TRIP = [
    None,
    True,
    False,
    0,
    -(2**70),
    1.5,
    -0.0,
    "",
    "héllo ✓ 世界",
    "\ud800 lone surrogate",
    [],
    [1, "a", None, [2.5, {"k": []}]],
    {},
    {"a": 1, "b": "x"},
    (),
    (1, "a", (2, 3)),
    [(1, 2), (3, 4)],
    {1, 2, 3},
    {"b", "a"},
    set(),
    frozenset({1, (2, 3)}),
    b"",
    b"\x00\xff\x80binary",
    bytearray(b"abc"),
    dt.datetime(2024, 5, 17, 12, 30, 45, 123456),
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 1, 5),
    dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    dt.timedelta(weeks=3),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    Decimal("-1E+3"),
    Decimal("0.000"),
    Color.RED,
    Priority.HIGH,
    Mode.FAST,
    Perm.R | Perm.W,
    Outer.Inner.A,
    Item("abc", 2),
    Money(Decimal("9.99"), "EUR"),
    Point(1, 2),
    {1: "a", 2: "b"},
    {(1, 2): "pair", (3,): "single"},
    {None: 1, True: 2, 1.5: 3, "s": 4},
    {frozenset({1}): [Color.GREEN]},
    {Color.RED: 1},
    {"__durable__": "uuid", "v": "not-a-uuid"},
    {"__durable__": 1, "nested": {"__durable__": {"__durable__": [1, (2,)]}}},
    [{"__durable__": "x"}, {"k": {"__durable__": None}}],
    {"deep": [{"t": (1, {2: {3, 4}})}]},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=_stable_id)
def test_round_trip_equal_value_and_type(value: object) -> None:
    """Every supported value loads back equal and of the same type, all the way down."""
    data = dumps(value)
    assert isinstance(data, bytes)
    assert_same(value, loads(data))


@pytest.mark.parametrize("value", ROUND_TRIP, ids=_stable_id)
def test_output_is_json(value: object) -> None:
    """The JSON format is standard JSON and never starts with the pickle marker."""
    data = dumps(value)
    assert data[:1] != b"\x80"
    json.loads(data.decode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "value", [None, 1, "x", 1.25, [1, 2], {"a": 1, "b": "x"}, {"a": [{"b": None}]}]
)
def test_plain_values_are_compact_json(value: object) -> None:
    """Plain values are written exactly as compact json.dumps would."""
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert dumps(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats(value: float) -> None:
    """NaN and infinities round-trip without non-standard JSON tokens."""
    data = dumps([value])
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    loaded = loads(data)
    assert isinstance(loaded, list)
    (back,) = loaded
    assert type(back) is float
    assert repr(back) == repr(value)


def test_zoneinfo_datetime_keeps_its_zone() -> None:
    """A datetime in a ZoneInfo zone keeps the zone, not just the offset."""
    value = dt.datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1)
    back = loads(dumps(value))
    assert isinstance(back, dt.datetime)
    assert back == value
    assert back.tzinfo == ZoneInfo("America/New_York")
    assert back.utcoffset() == value.utcoffset()


def test_nested_dataclass() -> None:
    """Dataclasses nest, keep init=False fields, and restore field types."""
    order = Order(
        id=uuid.uuid4(),
        items=[Item("a"), Item("b", 3)],
        total=Money(Decimal("12.50"), "USD"),
        created=dt.datetime.now(UTC),
        tags={"gift", "rush"},
    )
    order.computed = 42
    back = loads(dumps(order))
    assert_same(order, back)
    assert isinstance(back, Order)
    assert back.computed == 42
    assert type(back.total.amount) is Decimal


def test_pydantic_model() -> None:
    """Pydantic models round-trip inside containers, with aliases and tag-like keys."""
    user = User(
        id=uuid.uuid4(),
        name="ann",
        joined=dt.datetime(2020, 1, 1, tzinfo=UTC),
        address=Address(city="Paris", zipCode="75001"),
        scores=(1, 2),
        meta={"__durable__": "looks like a tag", "n": [1]},
    )
    back = loads(dumps({"user": user, "users": [user]}))
    assert back == {"user": user, "users": [user]}
    assert isinstance(back, dict)
    assert type(back["user"]) is User
    assert type(back["user"].address) is Address
    assert back["user"].scores == (1, 2)


def test_strict_pydantic_model() -> None:
    """Strict models load, because validation runs in JSON mode."""
    model = StrictModel(when=dt.datetime(2021, 2, 3, tzinfo=UTC), blob=b"xyz")
    assert loads(dumps(model)) == model


def test_dict_subclass_written_as_dict() -> None:
    """Subclasses of built-in containers are written as their base type."""
    from collections import OrderedDict

    back = loads(dumps(OrderedDict([("b", 1), ("a", 2)])))
    assert back == {"b": 1, "a": 2}
    assert type(back) is dict


def test_set_bytes_are_deterministic() -> None:
    """Sets serialize to the same bytes whatever their iteration order."""
    assert dumps({"c", "a", "b"}) == dumps({"b", "c", "a"})


@pytest.mark.parametrize(
    ("value", "what", "path", "type_name"),
    [
        (threading.Lock(), "value", "value", "_thread.lock"),
        (
            {"items": [1, 2, 3, threading.Lock()]},
            "result of step 'charge'",
            'value["items"][3]',
            "_thread.lock",
        ),
        ([lambda: 1], "argument 'cb' of workflow 'w'", "value[0]", "function"),
        ({"a": (1, {"b": Unknown()})}, "value", 'value["a"][1]["b"]', "Unknown"),
        ({1: Unknown()}, "value", "value[1]", "Unknown"),
        (Item("x", Unknown()), "value", "value.qty", "Unknown"),  # type: ignore[arg-type]
        ({"s": {Unknown()}}, "value", 'value["s"][0]', "Unknown"),
        ({Unknown(): 1}, "value", "(a dict key)", "Unknown"),
    ],
)
def test_unserializable_error_names_type_what_path_and_fix(
    value: object, what: str, path: str, type_name: str
) -> None:
    """The error names the type, the description, the path inside the value and the fix."""
    with pytest.raises(SerializationError) as info:
        dumps(value, what=what)
    message = str(info.value)
    assert what in message
    assert path in message
    assert type_name in message
    assert "dataclass or pydantic model" in message
    assert 'serializer="pickle"' in message


def test_open_file_is_rejected(tmp_path: Any) -> None:
    """An open file cannot be serialized."""
    with open(tmp_path / "f.txt", "w") as f, pytest.raises(SerializationError, match="TextIO"):
        dumps({"f": f})


def test_local_dataclass_rejected_at_dumps() -> None:
    """A dataclass defined in a function fails at dumps, not later at loads."""

    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="defined inside a function") as info:
        dumps({"v": Local(1)}, what="result of step 's'")
    assert "result of step 's'" in str(info.value)
    assert 'value["v"]' in str(info.value)


def test_cycle_is_rejected() -> None:
    """Reference cycles raise SerializationError on both code paths."""
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerializationError, match="cycle"):
        dumps(cycle)
    with pytest.raises(SerializationError, match="cycle"):
        dumps((cycle,))


def test_unknown_serializer() -> None:
    """An unknown serializer name is refused."""
    with pytest.raises(SerializationError, match="unknown serializer"):
        dumps(1, serializer="yaml")


def test_missing_class_at_load_names_class_and_fix() -> None:
    """A class that cannot be imported at load time is named, with the fix."""
    data = b'{"__durable__":"dataclass","t":"no_such_module.models:Order","v":{}}'
    with pytest.raises(SerializationError) as info:
        loads(data, what="result of step 'x'")
    message = str(info.value)
    assert "no_such_module.models:Order" in message
    assert "result of step 'x'" in message
    assert "importable" in message


def test_dataclass_recorded_by_older_code_loads() -> None:
    """A field added since gets its default; a field removed since is dropped."""
    data = (
        f'{{"__durable__":"dataclass","t":"{__name__}:Item","v":{{"sku":"a","gone":1}}}}'
    ).encode()
    assert_same(loads(data), Item("a", 1))


def test_dataclass_missing_required_field() -> None:
    """A recorded value without a required field names the field and the fix."""
    data = f'{{"__durable__":"dataclass","t":"{__name__}:Item","v":{{}}}}'.encode()
    with pytest.raises(SerializationError, match="'sku'.*give the field a default"):
        loads(data)


def test_tagged_path_must_be_the_right_kind_of_class() -> None:
    """A payload cannot make loads call an arbitrary importable callable."""
    data = b'{"__durable__":"dataclass","t":"os:system","v":{}}'
    with pytest.raises(SerializationError, match="not a dataclass"):
        loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"a":1} x',
        b"\xff\xfe",
        b'{"__durable__":"nope","v":1}',
        b'{"__durable__":"uuid","v":"zzz"}',
    ],
)
def test_corrupt_bytes(data: bytes) -> None:
    """Malformed payloads raise SerializationError."""
    with pytest.raises(SerializationError, match="cannot load"):
        loads(data)


def _make_closure(n: int) -> Any:
    def add(x: int) -> int:
        return x + n

    return add


def test_pickle_opt_in_handles_lambdas_and_closures() -> None:
    """The pickle serializer handles lambdas and closures and is marked by 0x80."""
    data = dumps({"f": lambda x: x * 2, "g": _make_closure(10)}, serializer="pickle")
    assert data[:1] == b"\x80"
    back = loads(data)
    assert isinstance(back, dict)
    assert back["f"](4) == 8
    assert back["g"](1) == 11


def test_pickle_local_class() -> None:
    """The pickle serializer handles classes defined in functions."""

    @dataclasses.dataclass
    class Local:
        x: int

    back = loads(dumps(Local(3), serializer="pickle"))
    assert back.x == 3  # type: ignore[attr-defined]


def test_pickle_failure_is_serialization_error() -> None:
    """Unpicklable values raise SerializationError naming the description."""
    with pytest.raises(SerializationError, match="result of step 'p'"):
        dumps(threading.Lock(), serializer="pickle", what="result of step 'p'")


def test_pickle_corrupt() -> None:
    """Corrupt pickle bytes raise SerializationError."""
    with pytest.raises(SerializationError, match="pickle"):
        loads(b"\x80\x05garbage")


# -- errors ---------------------------------------------------------------------------------


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("x"),
        KeyError("k"),
        RuntimeError(),
        OSError(2, "No such file"),
        PaymentDeclined("card_expired", 500),
        WithReduce("slow down", retry_in=2.5),
        RetryableError("busy", retry_after=3),
        NonDeterminismError("3", "step 'a'", "step 'b'"),
        ValueError((1, 2), {3: dt.date(2020, 1, 1)}),
    ],
    ids=repr,
)
def test_error_round_trip(exc: BaseException) -> None:
    """Exceptions are described as JSON and re-created with equal args and attributes."""
    exc = _raise(exc)
    d = error_to_dict(exc)
    assert d["message"] == str(exc)
    assert "_raise" in d["traceback"]
    assert json.loads(json.dumps(d)) == d  # JSON-native as it is
    back = error_from_dict(loads(dumps(d)))  # type: ignore[arg-type]
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back is not None and back.args == exc.args
    assert vars(back) == vars(exc)


def test_error_type_names() -> None:
    """Built-in exception types are unqualified; others carry their module."""
    assert error_to_dict(ValueError("x"))["type"] == "ValueError"
    assert error_to_dict(PaymentDeclined("c", 1))["type"] == f"{__name__}.PaymentDeclined"
    assert error_to_dict(KeyError())["type"] == "KeyError"
    # durable's own errors go by their public names, and old logs' private ones still resolve.
    recorded = error_to_dict(NonDeterminismError("3", "step 'a'", "step 'b'"))
    assert recorded["type"] == "durable.NonDeterminismError"
    older = {**recorded, "type": "durable._errors.NonDeterminismError"}
    assert type(error_from_dict(older)) is NonDeterminismError


def test_error_state_attributes_round_trip() -> None:
    """Attributes set on an exception instance are restored."""
    exc = Tagged("boom")
    exc.detail = {"retry": (1, 2)}  # type: ignore[attr-defined]
    back = error_from_dict(error_to_dict(exc))
    assert isinstance(back, Tagged)
    assert back.detail == {"retry": (1, 2)}  # type: ignore[attr-defined]


def test_error_with_unserializable_args() -> None:
    """Unserializable args are recorded as None and the error is not re-created."""
    d = error_to_dict(ValueError(threading.Lock()))
    assert d["args"] is None
    assert "lock" in d["message"]
    assert error_from_dict(d) is None


def test_error_local_type_is_not_recreated() -> None:
    """An exception class defined in a function cannot be re-created."""

    class LocalError(Exception):
        pass

    d = error_to_dict(_raise(LocalError("x")))
    assert d["type"].endswith("LocalError")
    assert d["message"] == "x"
    assert error_from_dict(d) is None


@pytest.mark.parametrize(
    "d",
    [
        {"type": "no.such.module.Error", "message": "x", "traceback": "", "args": ["x"]},
        {"type": "NoSuchBuiltin", "message": "x", "traceback": "", "args": ["x"]},
        {"type": "os.path.join", "message": "x", "traceback": "", "args": ["x"]},
        {"type": "ValueError", "message": "different", "traceback": "", "args": ["x"]},
        {"type": f"{__name__}.PaymentDeclined", "message": "x", "traceback": "", "args": ["x"]},
        {"type": "ValueError", "message": "x", "traceback": "", "args": None},
    ],
)
def test_error_from_dict_returns_none_when_not_recreatable(d: dict[str, Any]) -> None:
    """Unknown types, non-exceptions and mismatched messages give None."""
    assert error_from_dict(d) is None


def test_error_with_cause_traceback_includes_chain() -> None:
    """The recorded traceback includes chained exceptions."""
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as exc:
        d = error_to_dict(exc)
    assert "KeyError: 'inner'" in d["traceback"]
    assert "ValueError: outer" in d["traceback"]
