"""Inputs given as plain JSON take the types the workflow's annotations ask for.

A run started from Python records its arguments with their types (a pydantic model, a dataclass,
a datetime), and they come back as such. Arguments that arrive as plain JSON (``durable start
MODULE:WORKFLOW '[{"name": "ada"}]'``, a DAG's ``workflow`` node, another language) are only
dicts, lists and strings: where a parameter is annotated with a richer type, the value is
validated into it with pydantic, so ``def greet(user: User)`` gets a ``User`` either way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import reprlib
import typing
from collections.abc import Callable
from typing import Any

# Annotations a JSON value already satisfies as it is: nothing to convert.
_AS_IS: frozenset[object] = frozenset({Any, object, str, int, float, bool, dict, list, type(None)})
_JSON_NATIVE = (dict, list, str, int, float)
# What each plain annotation accepts from JSON (a bool is no int here, though Python says so).
_PLAIN: dict[object, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (int, float), bool: (bool,), dict: (dict,), list: (list,),
    type(None): (type(None),),
}


class _Parameters(typing.NamedTuple):
    signature: inspect.Signature
    adapters: dict[str, Any]  # parameter name -> pydantic TypeAdapter


@functools.lru_cache(maxsize=1024)
def _parameters(fn: Callable[..., Any]) -> _Parameters | None:
    try:
        hints = typing.get_type_hints(fn)
        signature = inspect.signature(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: arguments are taken as given
        return None
    adapters: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        hint = hints.get(name)
        if hint is None or hint in _AS_IS:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        from pydantic import TypeAdapter  # only here: importing pydantic takes ~100 ms

        try:
            adapters[name] = TypeAdapter(hint)
        except Exception:  # noqa: BLE001 - a type pydantic cannot validate: taken as given
            if typing.is_typeddict(hint):  # typing.TypedDict before 3.12: pydantic refuses it
                adapters[name] = _TypedDictAdapter(hint)
    return _Parameters(signature, adapters) if adapters else None


class _TypedDictAdapter:
    """Validates a ``typing.TypedDict`` (pydantic takes one only from typing_extensions on 3.11).

    The value must be an object with the required keys; each value is validated by its type.
    """

    def __init__(self, cls: Any) -> None:
        from pydantic import TypeAdapter

        self.name = cls.__name__
        required: set[str] = set()
        self.fields: dict[str, Any] = {}
        # Read from the hints, not __required_keys__: under `from __future__ import annotations`
        # Python 3.11 does not see NotRequired[...] in them.
        for key, hint in typing.get_type_hints(cls, include_extras=True).items():
            origin = typing.get_origin(hint)
            if origin in (typing.NotRequired, typing.Required):
                hint = typing.get_args(hint)[0]
            if origin is typing.Required or (origin is not typing.NotRequired and cls.__total__):
                required.add(key)
            try:
                self.fields[key] = TypeAdapter(hint)
            except Exception:  # noqa: BLE001, S112 - a type pydantic cannot take: as given
                continue
        self.required = frozenset(required)

    def validate_python(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object ({self.name}), got {type(value).__name__}")
        missing = sorted(self.required - value.keys())
        if missing:
            raise ValueError(f"{self.name} is missing {', '.join(map(repr, missing))}")
        checked = dict(value)
        for key, adapter in self.fields.items():
            if key in checked:
                try:
                    checked[key] = adapter.validate_python(checked[key])
                except Exception as exc:  # pydantic.ValidationError
                    problem = " ".join(str(exc).split())
                    raise ValueError(f"{self.name}[{key!r}]: {problem}") from None
        return checked


def coerce_arguments(
    fn: Callable[..., Any], what: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with plain JSON values validated into their annotated types.

    Raises:
        TypeError: a value does not fit its parameter's annotation (says which and why).
    """
    found = _parameters(fn)
    if found is None:
        return args, kwargs
    try:
        bound = found.signature.bind(*args, **kwargs)
    except TypeError:
        return args, kwargs  # the call itself reports the mismatch
    changed = False
    for name, value in bound.arguments.items():
        adapter = found.adapters.get(name)
        if adapter is None or not isinstance(value, _JSON_NATIVE) or isinstance(value, bool):
            continue
        try:
            bound.arguments[name] = adapter.validate_python(value)
        except Exception as exc:  # pydantic.ValidationError, without importing it eagerly
            problem = " ".join(str(exc).split())
            raise TypeError(
                f"{what}: argument {name!r} does not fit its annotation: {problem}"
            ) from None
        changed = True
    if not changed:
        return args, kwargs
    return bound.args, bound.kwargs


def check_plain_arguments(
    fn: Callable[..., Any], what: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Refuse JSON values that do not match a plain annotation (``str``, ``int``, ...).

    Such values are passed on as they are (nothing to convert), so only a caller holding plain
    JSON, such as ``durable start``, needs to check them before recording a run.

    Raises:
        TypeError: a value does not match (says which parameter and what it got).
    """
    try:
        hints = typing.get_type_hints(fn)
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except Exception:  # noqa: BLE001 - unresolvable annotations or a call that does not bind
        return
    for name, value in bound.arguments.items():
        accepted = _PLAIN.get(hints.get(name))
        if accepted is None:
            continue
        if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
            wanted = hints[name].__name__ if hints[name] is not type(None) else "None"
            raise TypeError(
                f"{what}: argument {name!r} must be {wanted}, got {type(value).__name__} "
                f"{reprlib.repr(value)}"  # cut short: a value may be megabytes long
            )


@functools.lru_cache(maxsize=1024)
def _result_adapter(fn: Callable[..., Any]) -> Any:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations: results are taken as recorded
        return None
    if not isinstance(hint, type) or not (
        dataclasses.is_dataclass(hint) or hasattr(hint, "model_validate")
    ):
        return None
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(hint)
    except Exception:  # noqa: BLE001 - a class pydantic cannot validate: taken as recorded
        return None


def recorded_result(fn: Callable[..., Any], value: object) -> object:
    """A step's recorded result, as the type its annotation now names where it was a plain dict.

    A result is recorded with its type, but code that changed a step's return annotation from
    ``dict`` to a dataclass or a pydantic model replays results older code recorded as dicts:
    they are validated into the class, or left as they are if they do not fit it.
    """
    if type(value) is not dict:
        return value
    adapter = _result_adapter(fn)
    if adapter is None:
        return value
    try:
        return adapter.validate_python(value)
    except Exception:  # noqa: BLE001 - a dict that does not fit: as recorded, as before
        return value
