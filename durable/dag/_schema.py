"""The JSON-Schema subset a DAG spec's ``input`` is written in, and checking a run input with it.

Supported: ``type``, ``properties``, ``required``, ``additionalProperties`` (``false``),
``items``, ``enum``, ``minLength``, ``maxLength``, ``pattern``, ``format`` (``email``, ``date``,
``date-time``, ``uuid``, ``uri``), ``minimum``, ``maximum``, ``minItems``, ``maxItems``; and the
annotations ``title``, ``description``, ``examples``, ``$schema``, ``$id``, ``$comment``. Any
other keyword is reported when the spec is validated, rather than silently left unchecked.

``default`` is applied: a property that the run input leaves out and whose schema has a
``default`` is filled in with it before any template reads the input (the default must fit the
property's schema). A template that reads a property the input may lack (one the schema does not
declare, or declares without making it ``required`` or giving it a ``default``) is reported when
the spec is validated.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                          "$comment"})
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_BOUNDS = ("minimum", "maximum")
KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum",
                      "pattern", "format", *_COUNTS, *_BOUNDS})


def _is_date(text: str) -> bool:
    dt.date.fromisoformat(text)
    return True


def _is_datetime(text: str) -> bool:
    return "T" in text.upper() and dt.datetime.fromisoformat(text) is not None


def _is_uri(text: str) -> bool:
    parts = urlparse(text)
    return bool(parts.scheme and (parts.netloc or parts.path))


_FORMATS: dict[str, Callable[[str], bool]] = {
    "email": lambda text: re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text) is not None,
    "date": _is_date,
    "date-time": _is_datetime,
    "uuid": lambda text: uuid.UUID(text) is not None,
    "uri": _is_uri,
}


def schema_problems(schema: Any, where: str) -> Iterator[str]:
    """What is wrong with a schema (each problem names where it is)."""
    if schema is None:
        return
    if not isinstance(schema, dict):
        yield f"{where}: a schema is an object, got {kind_of(schema)}"
        return
    for key in schema:
        if key not in KEYWORDS and key not in _ANNOTATIONS:
            yield (f"{where}: keyword {key!r} is not supported (use {', '.join(sorted(KEYWORDS))};"
                   " check anything else in a node)")
    kind = schema.get("type")
    for item in kind if isinstance(kind, list) else [kind] if kind is not None else []:
        if item not in TYPES:
            yield f"{where}.type: unknown type {item!r} (use one of {', '.join(sorted(TYPES))})"
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        yield f"{where}.properties: must be an object"
    else:
        for key, sub in props.items():
            yield from schema_problems(sub, f"{where}.properties.{key}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        yield f"{where}.required: must be a list of property names"
    if "items" in schema:
        yield from schema_problems(schema["items"], f"{where}.items")
    yield from _constraint_problems(schema, where)


def default_problems(schema: Any, where: str) -> Iterator[str]:
    """Defaults that do not fit their own schema (for a schema without other problems)."""
    if not isinstance(schema, dict):
        return
    if "default" in schema:
        rest = {k: v for k, v in schema.items() if k != "default"}
        yield from check_input(rest, schema["default"], f"{where}.default")
    for key, sub in schema.get("properties", {}).items():
        yield from default_problems(sub, f"{where}.properties.{key}")
    yield from default_problems(schema.get("items"), f"{where}.items")


def with_defaults(schema: dict[str, Any] | None, value: Any) -> Any:
    """``value`` with the ``default`` of each property it leaves out filled in, at any depth.

    ``value`` is not changed: the objects and lists on the way are copies, and so is each default.
    """
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return value
        filled = dict(value)
        for key, sub in props.items():
            if key not in filled and isinstance(sub, dict) and "default" in sub:
                filled[key] = copy.deepcopy(sub["default"])
            if key in filled:
                filled[key] = with_defaults(sub, filled[key])
        return filled
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class MissableProperty:
    """A property on a template's path into the run input that a valid input may lack."""

    path: str
    """Where it is, as ``input.a.b``."""
    declared: bool
    """Whether its object's schema lists it in ``properties`` (then it is merely optional)."""
    siblings: tuple[str, ...] = ()
    """The properties its object's schema lists, for one it does not: what a typo meant."""


def missable_property(
    schema: dict[str, Any] | None, path: Sequence[str | int]
) -> MissableProperty | None:
    """The first property on ``path`` (into the run input) that a valid input may lack.

    That is a property its object's schema does not put in ``required`` and either lists in
    ``properties`` without a ``default``, or does not list at all. A schema with ``properties``
    lists them all: reading another is almost always a typo, although JSON Schema lets an input
    carry extra properties (this subset has no ``additionalProperties: true`` for a spec to say it
    relies on them). ``None`` if every property on the path is sure to be there, or the schema
    does not say (an object without ``properties``, unless ``additionalProperties`` is false).
    """
    walked = "input"
    for key in path:
        if not isinstance(schema, dict):
            return None
        if isinstance(key, int):
            schema = schema.get("items")
            walked += f"[{key}]"
            continue
        walked += f".{key}"
        required = schema.get("required")
        props = schema.get("properties")
        if props is None and schema.get("additionalProperties") is False:
            props = {}  # no property at all is allowed
        if isinstance(required, list) and key in required:
            schema = props.get(key) if isinstance(props, dict) else None
            continue
        if not isinstance(props, dict):
            return None
        if key not in props:
            return MissableProperty(walked, declared=False, siblings=tuple(props))
        sub = props[key]
        if not (isinstance(sub, dict) and "default" in sub):
            return MissableProperty(walked, declared=True)
        schema = sub
    return None


def _constraint_problems(schema: dict[str, Any], where: str) -> Iterator[str]:
    for key in _COUNTS:
        value = schema.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            yield f"{where}.{key}: must be a whole number >= 0, got {value!r}"
    for key in _BOUNDS:
        value = schema.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            yield f"{where}.{key}: must be a number, got {value!r}"
    if "enum" in schema and not isinstance(schema["enum"], list):
        yield f"{where}.enum: must be a list of the allowed values"
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            yield f"{where}.pattern: not a regular expression ({exc})"
    if "format" in schema and schema["format"] not in _FORMATS:
        yield (f"{where}.format: unknown format {schema['format']!r} "
               f"(use one of {', '.join(sorted(_FORMATS))})")
    if schema.get("additionalProperties", False) is not False:
        yield f"{where}.additionalProperties: only false is supported (extra properties refused)"


def check_input(schema: dict[str, Any] | None, value: Any, where: str = "input") -> list[str]:
    """Check a run input against a (valid) schema; every problem found, each naming where."""
    if schema is None:
        return []
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if kinds and not any(_is_type(value, k) for k in kinds):
        return [f"{where}: expected {' or '.join(kinds)}, got {kind_of(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: must be one of {schema['enum']!r}, got {value!r}"]
    errors: list[str] = []
    if isinstance(value, dict):
        errors.extend(_object_problems(schema, value, where))
    if isinstance(value, list):
        errors.extend(_sized(schema, len(value), "minItems", "maxItems", "items", where))
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                errors.extend(check_input(schema["items"], item, f"{where}[{index}]"))
    if isinstance(value, str):
        errors.extend(_string_problems(schema, value, where))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: must be at least {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: must be at most {schema['maximum']}, got {value}")
    return errors


def _object_problems(schema: dict[str, Any], value: dict[str, Any], where: str) -> list[str]:
    props = schema.get("properties", {})
    errors = [f"{where}: missing required property {key!r}"
              for key in schema.get("required", []) if key not in value]
    for key, sub in props.items():
        if key in value and isinstance(sub, dict):
            errors.extend(check_input(sub, value[key], f"{where}.{key}"))
    if schema.get("additionalProperties") is False:
        errors.extend(f"{where}: unexpected property {key!r}" for key in value if key not in props)
    return errors


def _string_problems(schema: dict[str, Any], value: str, where: str) -> list[str]:
    errors = _sized(schema, len(value), "minLength", "maxLength", "characters", where)
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{where}: does not match the pattern {schema['pattern']!r}")
    check = _FORMATS.get(schema.get("format", ""))
    if check is not None:
        try:
            valid = check(value)
        except ValueError:
            valid = False
        if not valid:
            errors.append(f"{where}: not a valid {schema['format']}: {value!r}")
    return errors


def _sized(schema: dict[str, Any], size: int, low: str, high: str, unit: str,
           where: str) -> list[str]:
    errors = []
    if low in schema and size < schema[low]:
        errors.append(f"{where}: must have at least {schema[low]} {unit}, has {size}")
    if high in schema and size > schema[high]:
        errors.append(f"{where}: must have at most {schema[high]} {unit}, has {size}")
    return errors


def _is_type(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    checks: dict[str, type | tuple[type, ...]] = {
        "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)
    }
    expected = checks.get(kind)
    return expected is not None and isinstance(value, expected)


def kind_of(value: Any) -> str:
    """A value's JSON kind, for messages."""
    return "null" if value is None else type(value).__name__
