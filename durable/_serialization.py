"""Turn step results, workflow arguments and errors into bytes and back.

Two formats, told apart by the first byte:

* **JSON** (the default). The bytes are compact UTF-8 JSON, readable by any tool. A JSON text
  never starts with byte ``0x80``. Types JSON lacks are written as *tagged objects*,
  ``{"__durable__": "<tag>", "v": ...}``: tuples, sets, frozensets, bytes, datetimes, dates,
  times, timedeltas, UUIDs, Decimals, non-finite floats, Enum members, dataclasses, named tuples,
  pydantic models, and dicts whose keys are not all strings. A user's dict that happens to contain
  the key ``"__durable__"`` is written as a ``"dict"`` tag too, so it round-trips unchanged.
  Enum members, dataclasses, named tuples and pydantic models are restored by import path
  (``"module:QualName"``), so their classes must be importable by whoever loads the value.
* **Pickle** (opt-in with ``serializer="pickle"``). The bytes are cloudpickle output, protocol 5,
  which always starts with the pickle ``PROTO`` opcode ``0x80``. Unpickling can run arbitrary
  code, so it is never the default.

Plain JSON values (``None``, bools, ints, finite floats, strs, lists and str-keyed dicts of
these) take a fast path: one cheap type check, then the C JSON encoder. :func:`loads` only
installs the tag decoder when the bytes contain the tag key.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import math
import os
import pickle
import sys
import traceback
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from durable._errors import SerializationError

__all__ = ["dumps", "error_from_dict", "error_to_dict", "json_object", "loads"]

_TAG = "__durable__"
_TAG_BYTES = _TAG.encode()
_PICKLE_PREFIX = b"\x80"
_PICKLE_PROTOCOL = 5
_FIX = (
    "use JSON-friendly data, a dataclass or pydantic model, or opt in to pickle with "
    'serializer="pickle"'
)

# Exact types that JSON represents natively. Subclasses (IntEnum, StrEnum, OrderedDict, ...)
# deliberately miss this set so they take the tagging path.
_SCALARS = frozenset({str, int, bool, float, type(None)})

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)
# JSONEncoder.encode builds a new C encoder on every call; building it once saves about a
# microsecond per value. Cycles need no marker dict: the callers below never pass one in.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # None off CPython
_c_encoder: Callable[[object, int], Any] | None = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


_PLAIN_DECODER = json.JSONDecoder()
_decode_plain = _PLAIN_DECODER.decode
_scan_plain: Callable[[str, int], tuple[Any, int]]
_scan_plain = _PLAIN_DECODER.scan_once  # type: ignore[attr-defined]


def _encode_json(tree: object) -> str:
    """Compact JSON text for a JSON-native tree; ValueError on NaN or infinity."""
    if _c_encoder is None:
        return _ENCODER.encode(tree)
    return "".join(_c_encoder(tree, 0))


class _Unserializable(Exception):
    """Internal: a value inside the tree cannot be encoded; carries the path to it."""

    def __init__(self, obj: object, problem: str | None = None) -> None:
        super().__init__()
        self.obj = obj
        self.problem = problem
        self.path: list[str] = []  # innermost segment first, appended while unwinding


class _Corrupt(Exception):
    """Internal: a tagged object could not be decoded; the message says why."""


# --------------------------------------------------------------------------------------------
# dumps


def dumps(value: object, *, serializer: str = "json", what: str = "value") -> bytes:
    """Serialize a value to bytes that :func:`loads` turns back into an equal value.

    Args:
        value: the value to serialize.
        serializer: ``"json"`` (the default, see the module docstring for the supported types)
            or ``"pickle"`` (cloudpickle; handles lambdas, closures and arbitrary objects, but
            loading it runs code, so only use it for data you trust).
        what: a description of the value for error messages, e.g.
            ``"result of step 'charge'"`` or ``"argument 'user' of workflow 'signup'"``.

    Returns:
        The serialized bytes.

    Raises:
        SerializationError: the value (or something inside it) cannot be serialized; the message
            names the offending type, ``what``, the path inside the value and how to fix it.
    """
    if serializer == "json":
        try:
            if _is_plain(value):
                try:
                    return _encode_json(value).encode("utf-8", "surrogatepass")
                except ValueError:
                    pass  # a NaN or infinity: the tagging path below writes those
            return _encode_json(_encode(value)).encode("utf-8", "surrogatepass")
        except _Unserializable as exc:
            raise SerializationError(_unserializable_message(exc, what)) from None
        except RecursionError:
            raise SerializationError(
                f"cannot serialize {what}: it contains a reference cycle or is nested too "
                f"deeply; {_FIX}"
            ) from None
        except ValueError as exc:  # e.g. an int beyond sys.get_int_max_str_digits()
            raise SerializationError(f"cannot serialize {what}: {exc}") from exc
    if serializer == "pickle":
        return _dumps_pickle(value, what)
    raise SerializationError(
        f'unknown serializer {serializer!r} for {what}: use "json" (the default) or "pickle"'
    )


def _is_plain(value: object) -> bool:
    """Whether the C encoder alone writes ``value`` faithfully (no tags, no lossy coercion)."""
    t = type(value)
    if t in _SCALARS:
        return True
    if t is dict:
        d: dict[Any, Any] = value  # type: ignore[assignment]
        if _TAG in d:
            return False
        for k, x in d.items():
            if type(k) is not str:
                return False
            if type(x) not in _SCALARS and not _is_plain(x):
                return False
        return True
    if t is list:
        for x in value:  # type: ignore[attr-defined]
            if type(x) not in _SCALARS and not _is_plain(x):
                return False
        return True
    return False


def _encode(v: object) -> Any:
    """Convert ``v`` into a JSON-native tree, tagging whatever JSON cannot represent."""
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return v if math.isfinite(v) else {_TAG: "float", "v": repr(v)}  # type: ignore[arg-type]
    if t is list:
        return _encode_items(v)
    if t is dict:
        return _encode_dict(v)  # type: ignore[arg-type]
    encoder = _ENCODERS.get(t)
    if encoder is not None:
        return encoder(v)
    return _encode_other(v)


def _encode_items(items: Any) -> list[Any]:
    out = []
    for i, x in enumerate(items):
        try:
            out.append(_encode(x))
        except _Unserializable as exc:
            exc.path.append(f"[{i}]")
            raise
    return out


def _encode_dict(d: dict[Any, Any]) -> Any:
    if _TAG not in d and all(type(k) is str for k in d):
        out = {}
        for k, x in d.items():
            try:
                out[k] = _encode(x)
            except _Unserializable as exc:
                exc.path.append(_key_segment(k))
                raise
        return out
    pairs = []
    for k, x in d.items():
        try:
            ek = _encode(k)
        except _Unserializable as exc:
            exc.path.append(f"[{_short_repr(k)}] (a dict key)")
            raise
        try:
            pairs.append([ek, _encode(x)])
        except _Unserializable as exc:
            exc.path.append(_key_segment(k))
            raise
    return {_TAG: "dict", "v": pairs}


def _encode_set(tag: str, s: set[Any] | frozenset[Any]) -> dict[str, Any]:
    try:
        # Sorting makes the bytes independent of hash seeds when the items allow it.
        items: list[Any] = sorted(s)
    except TypeError:
        items = list(s)
    return {_TAG: tag, "v": _encode_items(items)}


def _encode_datetime(v: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = {_TAG: "datetime", "v": v.isoformat()}
    if isinstance(v.tzinfo, ZoneInfo):
        out["tz"] = v.tzinfo.key
    return out


def _encode_timedelta(v: dt.timedelta) -> dict[str, Any]:
    return {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]}


def _encode_bytes(v: bytes | bytearray) -> dict[str, Any]:
    tag = "bytes" if type(v) is bytes else "bytearray"
    return {_TAG: tag, "v": base64.b64encode(v).decode("ascii")}


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda v: {_TAG: "tuple", "v": _encode_items(v)},
    set: lambda v: _encode_set("set", v),
    frozenset: lambda v: _encode_set("frozenset", v),
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
    dt.datetime: _encode_datetime,
    dt.date: lambda v: {_TAG: "date", "v": v.isoformat()},
    dt.time: lambda v: {_TAG: "time", "v": v.isoformat()},
    dt.timedelta: _encode_timedelta,
    uuid.UUID: lambda v: {_TAG: "uuid", "v": str(v)},
    Decimal: lambda v: {_TAG: "decimal", "v": str(v)},
}


def _encode_enum(v: enum.Enum) -> Any:
    path = _class_path(v)
    try:
        ev = _encode(v.value)
    except _Unserializable as exc:
        exc.path.append(".value")
        raise
    return {_TAG: "enum", "t": path, "v": ev}


def _encode_dataclass(v: Any) -> Any:
    path = _class_path(v)
    fields = {}
    for f in dataclasses.fields(v):
        try:
            fields[f.name] = _encode(getattr(v, f.name))
        except _Unserializable as exc:
            exc.path.append(f".{f.name}")
            raise
    # Values are already encoded; only a field named like the tag key needs escaping.
    if _TAG in fields:
        return {_TAG: "dataclass", "t": path, "v": {_TAG: "dict", "v": _pairs(fields)}}
    return {_TAG: "dataclass", "t": path, "v": fields}


def _encode_other(v: object) -> Any:
    """Encode values whose exact type is not in the fast tables (mostly user classes)."""
    if isinstance(v, enum.Enum):
        return _encode_enum(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _encode_dataclass(v)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(v, pydantic.BaseModel):
        return _encode_pydantic(v)
    if isinstance(v, tuple):
        if hasattr(type(v), "_fields"):
            return {_TAG: "namedtuple", "t": _class_path(v), "v": _encode_items(v)}
        return _ENCODERS[tuple](v)
    # Subclasses of built-in types (OrderedDict, a str subclass, a pandas Timestamp, ...) are
    # written as their base type, as json itself would.
    if isinstance(v, dict):
        return _encode_dict(dict(v))
    if isinstance(v, list):
        return _encode_items(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return _encode(float(v))
    for base in (dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID, Decimal, set, frozenset):
        if isinstance(v, base):
            return _ENCODERS[base](v)
    raise _Unserializable(v)


def _pairs(d: dict[str, Any]) -> list[list[Any]]:
    return [[k, x] for k, x in d.items()]


def _encode_pydantic(v: Any) -> dict[str, Any]:
    path = _class_path(v)
    try:
        data = v.model_dump(mode="json", round_trip=True, by_alias=False)
    except Exception as exc:  # pydantic raises PydanticSerializationError and friends
        raise _Unserializable(
            v, f"pydantic model {_type_name(type(v))} cannot be dumped to JSON ({exc})"
        ) from None
    # The dump is JSON-native; encoding it only escapes dicts that contain the tag key.
    return {_TAG: "pydantic", "t": path, "v": _encode(data)}


def _class_path(v: object) -> str:
    """``module:QualName`` of ``v``'s class, checked to resolve back to that class."""
    cls = type(v)
    module, qualname = cls.__module__, cls.__qualname__
    if "<locals>" in qualname:
        raise _Unserializable(
            v,
            f"{_type_name(cls)} is defined inside a function, so it cannot be imported when "
            "the value is loaded; define it at module level, or opt in to pickle with "
            'serializer="pickle"',
        )
    obj: object = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not cls:
        raise _Unserializable(
            v,
            f"{_type_name(cls)} cannot be found as {module}:{qualname}, so it cannot be "
            "imported when the value is loaded; define it at module level under its own name, "
            'or opt in to pickle with serializer="pickle"',
        )
    if module == "__main__":
        module = _main_module_name() or module
    return f"{module}:{qualname}"


def importable_path(cls: type) -> str:
    """``module:QualName`` of a class, naming the script running as ``__main__`` importably."""
    module = cls.__module__
    if module == "__main__":
        module = _main_module_name() or module
    return f"{module}:{cls.__qualname__}"


def _main_module_name() -> str | None:
    """An importable name for the script running as ``__main__`` (``examples.signup``).

    A value recorded by ``python examples/signup.py`` must load in a worker that imported
    ``examples.signup``; ``__main__`` would name the worker's own entry point instead.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    filename = getattr(main, "__file__", None)
    if not filename:
        return None
    path = os.path.abspath(filename)
    roots = [os.getcwd(), *sys.path[1:]]
    for root in roots:
        root = os.path.abspath(root or os.curdir)
        if path.startswith(root + os.sep):
            relative = os.path.splitext(os.path.relpath(path, root))[0]
            parts = relative.split(os.sep)
            if all(part.isidentifier() for part in parts):
                return ".".join(parts)
    return None


def module_named(name: str) -> Any:
    """The module ``name``, importing it only if this process has not loaded it yet.

    The script running as ``__main__`` is the module its values were recorded under (see
    :func:`_main_module_name`): importing it again by that name would run the script a second
    time and load values as instances of a second copy of each class.
    """
    module = sys.modules.get(name)
    if module is None:
        main = sys.modules.get("__main__")
        main_name = _main_module_name() if main is not None else None
        if name == main_name:
            return main
        # Importing "script.Outer" would first import "script" afresh, running the script again;
        # a module that is not a package has no submodules to find anyway.
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            loaded = main if prefix == main_name else sys.modules.get(prefix)
            if loaded is not None and not hasattr(loaded, "__path__"):
                raise ModuleNotFoundError(f"{prefix!r} is not a package", name=name)
        module = importlib.import_module(name)
    return module


def _dumps_pickle(value: object, what: str) -> bytes:
    try:
        import cloudpickle  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise SerializationError(
            f'cannot serialize {what} with serializer="pickle": cloudpickle is not installed; '
            "install it with `pip install cloudpickle`"
        ) from None
    try:
        data: bytes = cloudpickle.dumps(value, protocol=_PICKLE_PROTOCOL)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {what} with pickle: {type(exc).__name__}: {exc} (the value is a "
            f"{_type_name(type(value))}); return picklable data"
        ) from None
    return data


def _unserializable_message(exc: _Unserializable, what: str) -> str:
    where = "value" + "".join(reversed(exc.path))
    if exc.problem is not None:
        return f"cannot serialize {what}: {where}: {exc.problem}"
    return (
        f"cannot serialize {what}: {where} is a {_type_name(type(exc.obj))}, which has no JSON "
        f"form; {_FIX}"
    )


def _key_segment(k: object) -> str:
    if type(k) is str:
        return f"[{json.dumps(k, ensure_ascii=False)}]"
    return f"[{_short_repr(k)}]"


def _short_repr(v: object) -> str:
    try:
        r = repr(v)
    except Exception:
        return f"<{_type_name(type(v))}>"
    return r if len(r) <= 60 else r[:57] + "..."


def _type_name(cls: type) -> str:
    """``module.QualName``, or just ``QualName`` for built-ins."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    module = cls.__module__
    if module == "__main__":
        module = _main_module_name() or module
    elif module.startswith("durable.") and "._" in module:
        # The package's own types go by their public names (durable.NonDeterminismError,
        # durable.dag.TemplateError): the package above the first private module.
        public = module.partition("._")[0]
        package = sys.modules.get(public)
        if package is not None and getattr(package, cls.__qualname__, None) is cls:
            module = public
    return f"{module}.{cls.__qualname__}"


# --------------------------------------------------------------------------------------------
# loads


def json_object(data: bytes | None) -> dict[str, Any]:
    """The JSON object an event or record holds (an error, a wait's details), else ``{}``."""
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def loads(data: bytes, *, what: str = "value") -> object:
    """Deserialize bytes written by :func:`dumps`, detecting the format from the first byte.

    Args:
        data: the serialized bytes.
        what: a description of the value for error messages, as for :func:`dumps`.

    Returns:
        A value equal to (and of the same type as) the one passed to :func:`dumps`.

    Raises:
        SerializationError: the bytes are corrupt, or a class they name cannot be imported.
    """
    if data[:1] == _PICKLE_PREFIX:
        return _loads_pickle(data, what)
    try:
        text = data.decode("utf-8", "surrogatepass")
        scan = _scan_tagged if _TAG_BYTES in data else _scan_plain
        # scan_once skips JSONDecoder.decode's regex work; it only handles a value that starts
        # at offset 0 and fills the text, as dumps writes it. Anything else takes the full path.
        try:
            value, end = scan(text, 0)
        except StopIteration:
            end = -1
        if end == len(text):
            return value
        return (_decode_tagged if scan is _scan_tagged else _decode_plain)(text)
    except _Corrupt as exc:
        raise SerializationError(f"cannot load {what}: {exc}") from exc.__cause__
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SerializationError(f"cannot load {what}: the bytes are not valid ({exc})") from exc


def _loads_pickle(data: bytes, what: str) -> object:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot load {what} (pickle): {type(exc).__name__}: {exc}; make sure the code that "
            "defined the value is importable here"
        ) from exc


def _object_hook(d: dict[str, Any]) -> object:
    tag = d.get(_TAG)
    if tag is None:
        return d
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise _Corrupt(
            f"unknown tagged value {tag!r} (was it written by a newer version of durable?)"
        )
    try:
        return decoder(d)
    except _Corrupt:
        raise
    except Exception as exc:
        raise _Corrupt(f"corrupt {tag!r} value ({type(exc).__name__}: {exc})") from exc


_TAGGED_DECODER = json.JSONDecoder(object_hook=_object_hook)
_decode_tagged = _TAGGED_DECODER.decode
_scan_tagged: Callable[[str, int], tuple[Any, int]]
_scan_tagged = _TAGGED_DECODER.scan_once  # type: ignore[attr-defined]


def _import_class(path: str, kind: str, check: Callable[[object], bool]) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = module_named(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise _Corrupt(
            f"cannot import the {kind} class {path} ({type(exc).__name__}: {exc}); make sure "
            "its module is importable here (same code version, on sys.path) and the class is "
            "defined at module level under that name"
        ) from exc
    if not check(obj):
        raise _Corrupt(f"{path} is not a {kind} class")
    return obj


def _decode_enum(d: dict[str, Any]) -> object:
    cls = _import_class(d["t"], "Enum", lambda c: isinstance(c, type) and issubclass(c, enum.Enum))
    return cls(d["v"])


def _decode_dataclass(d: dict[str, Any]) -> object:
    cls = _import_class(
        d["t"], "dataclass", lambda c: isinstance(c, type) and dataclasses.is_dataclass(c)
    )
    # Restore the recorded state without re-running __init__/__post_init__, as pickle does.
    # Values recorded by older code may lack a field added since (it gets its default) or hold
    # one removed since (it is dropped), so a deploy does not break runs already in flight.
    recorded: dict[str, Any] = d["v"]
    obj = cls.__new__(cls)
    for field in dataclasses.fields(cls):
        if field.name in recorded:
            value = recorded[field.name]
        elif field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            raise _Corrupt(
                f"the recorded {d['t']} has no field {field.name!r}, and the class gives it no "
                "default; give the field a default so values recorded by older code still load"
            )
        object.__setattr__(obj, field.name, value)
    return obj


def _decode_namedtuple(d: dict[str, Any]) -> object:
    cls = _import_class(
        d["t"],
        "named tuple",
        lambda c: isinstance(c, type) and issubclass(c, tuple) and hasattr(c, "_fields"),
    )
    return cls(*d["v"])


def _decode_pydantic(d: dict[str, Any]) -> object:
    def is_model(c: object) -> bool:
        pydantic = sys.modules.get("pydantic")
        return isinstance(c, type) and pydantic is not None and issubclass(c, pydantic.BaseModel)

    cls = _import_class(d["t"], "pydantic model", is_model)
    # Validate in JSON mode, the exact inverse of model_dump(mode="json"), so strict models work.
    # The dump used field names, not aliases; by_name needs pydantic >= 2.11.
    text = _encode_json(d["v"])
    try:
        return cls.model_validate_json(text, by_alias=False, by_name=True)
    except TypeError:
        return cls.model_validate_json(text)


def _decode_datetime(d: dict[str, Any]) -> object:
    value = dt.datetime.fromisoformat(d["v"])
    tz = d.get("tz")
    return value.astimezone(ZoneInfo(tz)) if tz is not None else value


def _decode_float(d: dict[str, Any]) -> float:
    value = float(d["v"])
    if math.isfinite(value):
        raise ValueError(f"{d['v']!r} is finite")
    return value


_DECODERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "tuple": lambda d: tuple(d["v"]),
    "set": lambda d: set(d["v"]),
    "frozenset": lambda d: frozenset(d["v"]),
    "dict": lambda d: {k: v for k, v in d["v"]},
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["v"], validate=True)),
    "datetime": _decode_datetime,
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d: dt.timedelta(*d["v"]),
    "uuid": lambda d: uuid.UUID(d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "float": _decode_float,
    "enum": _decode_enum,
    "dataclass": _decode_dataclass,
    "namedtuple": _decode_namedtuple,
    "pydantic": _decode_pydantic,
}


# --------------------------------------------------------------------------------------------
# errors


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """Describe an exception as a JSON-native dict, for recording a failed step or run.

    Args:
        exc: the exception.

    Returns:
        ``{"type", "message", "traceback", "args", "state"}``: ``type`` is ``"module.QualName"``
        (just ``"QualName"`` for built-ins such as ``"ValueError"``), ``message`` is
        ``str(exc)``, ``traceback`` the formatted traceback including chained exceptions.
        ``args`` are the constructor arguments (from ``__reduce__`` when it names the class
        itself, else ``exc.args``) in the tagged JSON form, or ``None`` when they cannot be
        serialized; ``state`` is the instance ``__dict__`` in the same form, or ``None`` when
        it is empty or cannot be serialized.
        The dict can be passed to :func:`json.dumps` or :func:`dumps` as it is.
    """
    cls = type(exc)
    args: tuple[Any, ...] = exc.args
    # Attributes set in __init__ (e.g. a keyword-only option) are not always in ``args``.
    state: object = getattr(exc, "__dict__", None) or None
    try:
        reduced = exc.__reduce__()
    except Exception:
        reduced = None
    if isinstance(reduced, tuple) and len(reduced) >= 2 and reduced[0] is cls:
        if isinstance(reduced[1], tuple):
            args = reduced[1]
        if len(reduced) >= 3 and isinstance(reduced[2], dict) and reduced[2]:
            state = reduced[2]
    return {
        "type": _type_name(cls),
        "message": _safe_str(exc),
        "traceback": user_traceback(exc),
        "args": _try_encode(list(args)),
        "state": None if state is None else _try_encode(state),
    }


ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
"""The ``durable`` package's directory: frames there are the engine's, not the user's."""


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (and its chained exceptions) without durable's frames.

    A step's or workflow's error passes through the engine's calls between the workflow's code
    and the step's: those frames say nothing about the failure. A traceback with no frame
    outside the engine (an error the engine raised) is kept whole.
    """
    formatted = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending = [formatted]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [f for f in current.stack if not f.filename.startswith(ENGINE_DIR)]
        if kept:
            current.stack = traceback.StackSummary.from_list(kept)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += getattr(current, "exceptions", None) or []
    return "".join(formatted.format())


def error_from_dict(d: dict[str, Any]) -> BaseException | None:
    """Re-create the exception described by :func:`error_to_dict`, if possible.

    Args:
        d: a dict made by :func:`error_to_dict`.

    Returns:
        A new exception of the same type, built from the recorded arguments and state, whose
        ``str()`` equals the recorded message; ``None`` when the type cannot be imported, the
        arguments were not recorded, construction fails, or the result reads differently.
    """
    try:
        cls = _resolve_type_name(d["type"])
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            return None
        if d.get("args") is None:
            return None
        args = _decode_tagged(_encode_json(d["args"]))
        exc = cls(*args)
        if d.get("state") is not None and hasattr(exc, "__dict__"):
            exc.__dict__.update(_decode_tagged(_encode_json(d["state"])))
    except Exception:
        return None
    return exc if _safe_str(exc) == d.get("message") else None


def _try_encode(value: object) -> Any:
    try:
        return _encode(value)
    except (_Unserializable, RecursionError):
        return None


def _resolve_type_name(name: str) -> object:
    if "<locals>" in name:  # defined inside a function: no import can reach it
        return None
    parts = name.split(".")
    if len(parts) == 1:
        return getattr(importlib.import_module("builtins"), name, None)
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: object = module_named(module_name)
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, None)
        return obj
    return None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {_type_name(type(exc))}>"
