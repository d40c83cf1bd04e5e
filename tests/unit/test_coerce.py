"""Plain JSON arguments are validated into the types a workflow's parameters are annotated with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pydantic
import pytest

from durable._coerce import check_plain_arguments, coerce_arguments


class User(pydantic.BaseModel):
    name: str
    age: int = 0


@dataclass
class Point:
    x: int
    y: int


def register(user: User, tags: list[str], at: dt.datetime | None = None, *, where: Point) -> None:
    pass


def plain(n: int, text: str, data: dict[str, Any], anything) -> None:  # noqa: ANN001
    pass


def test_json_values_become_the_annotated_types() -> None:
    args, kwargs = coerce_arguments(
        register,
        "input",
        ({"name": "ada", "age": 36}, ["x"], "2026-11-22T10:00:00+00:00"),
        {"where": {"x": 1, "y": 2}},
    )
    assert args == (User(name="ada", age=36), ["x"], dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC))
    assert kwargs == {"where": Point(1, 2)}


def test_values_already_of_their_type_are_left_alone() -> None:
    user, point = User(name="ada"), Point(1, 2)
    args, kwargs = coerce_arguments(register, "input", (user, [], None), {"where": point})
    assert args[0] is user and kwargs["where"] is point


def test_plain_annotations_change_nothing() -> None:
    given = (1, "t", {"a": 1}, {"b": 2})
    assert coerce_arguments(plain, "input", given, {}) == (given, {})


def test_a_value_that_does_not_fit_says_which_argument_and_why() -> None:
    fits = r"input: argument 'user' does not fit its annotation: .*name"
    with pytest.raises(TypeError, match=fits):
        coerce_arguments(register, "input", ({"age": 3}, []), {"where": {"x": 1, "y": 2}})


def counts(n: int, ratio: float, flag: bool, text: str, items: list, maybe: int | None) -> None:
    pass


def test_plain_annotations_refuse_json_of_another_type() -> None:
    check_plain_arguments(counts, "ARGS", (1, 2, True, "t", [], None), {})
    check_plain_arguments(counts, "ARGS", (1, 2.5, False, "t", [1], 3), {})
    for args, named in [
        (("1", 2.0, True, "t", [], None), "'n' must be int, got str '1'"),
        ((True, 2.0, True, "t", [], None), "'n' must be int, got bool True"),
        ((1, "2", True, "t", [], None), "'ratio' must be float, got str '2'"),
        ((1, 2.0, 1, "t", [], None), "'flag' must be bool, got int 1"),
        ((1, 2.0, True, 5, [], None), "'text' must be str, got int 5"),
        ((1, 2.0, True, "t", {}, None), "'items' must be list, got dict {}"),
    ]:
        with pytest.raises(TypeError, match=f"ARGS: argument {named}"):
            check_plain_arguments(counts, "ARGS", args, {})
    # A value megabytes long is cut short in the message.
    with pytest.raises(TypeError) as refused:
        check_plain_arguments(counts, "ARGS", ("y" * 350_000, 2.0, True, "t", [], None), {})
    assert str(refused.value).startswith("ARGS: argument 'n' must be int, got str 'yyy")
    assert len(str(refused.value)) < 200


class Order(TypedDict):
    id: str
    items: list[str]
    when: dt.date
    note: NotRequired[str]


def place(order: Order) -> None:
    pass


def test_a_typing_typed_dict_is_checked_and_its_values_converted() -> None:
    args, _ = coerce_arguments(place, "input", ({"id": "A-3", "items": ["mug"],
                                                 "when": "2026-11-23"},), {})
    assert args[0] == {"id": "A-3", "items": ["mug"], "when": dt.date(2026, 11, 23)}
    with pytest.raises(TypeError, match=r"argument 'order' does not fit its annotation: Order "
                       r"is missing 'items', 'when'"):
        coerce_arguments(place, "input", ({"id": "A-3"},), {})
    with pytest.raises(TypeError, match=r"Order\['id'\]: .*valid string"):
        coerce_arguments(place, "input", ({"id": 3, "items": [], "when": "2026-11-23"},), {})
    with pytest.raises(TypeError, match=r"expected an object \(Order\), got str"):
        coerce_arguments(place, "input", ("A-3",), {})
