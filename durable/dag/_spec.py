"""The DAG spec format, modelled with pydantic, and loading it from JSON or YAML files."""

from __future__ import annotations

import importlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from durable._durations import parse_duration
from durable._options import RetryPolicy

__all__ = [
    "CompensateSpec",
    "DagSpec",
    "Defaults",
    "NodeSpec",
    "RetrySpec",
    "load_file",
    "spec_schema",
]

OnFailure = Literal["fail", "continue", "compensate"]


def _delay_seconds(value: Any) -> Any:
    # A duration string ("5s", "5m") or a timedelta (a spec built in Python) becomes seconds;
    # a number is left to the float field's own check (ge=0): the validated field is a float.
    if isinstance(value, str | timedelta):
        return parse_duration(value)
    return value


_Delay = Annotated[
    float,
    BeforeValidator(_delay_seconds),
    Field(ge=0),
    WithJsonSchema({"anyOf": [{"minimum": 0, "type": "number"}, {"type": "string"}]}),
]
"""Seconds, or a duration string such as ``"5s"`` or ``"5m"``: a float once validated."""


class RetrySpec(BaseModel):
    """How a node's step is retried (the fields of :class:`durable.RetryPolicy`)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_attempts: int = Field(3, ge=1)
    initial_delay: _Delay = 1.0
    """Before the second attempt: seconds, or a duration string such as ``"5s"``."""
    backoff: float = Field(2.0, ge=1)
    max_delay: _Delay = 60.0
    """The longest delay between attempts: seconds, or a duration string such as ``"5m"``."""
    jitter: bool = True

    def policy(self) -> RetryPolicy:
        """The equivalent :class:`durable.RetryPolicy`."""
        return RetryPolicy(**self.model_dump())


def _check_timeout(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise ValueError(f"expected seconds or a duration string such as '30s', got {value!r}")
    if parse_duration(value) <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _check_foreach(value: Any) -> Any:
    if value is not None and not isinstance(value, str | list):
        raise ValueError("must be a template such as '{{ input.items }}' (resolving to a list) "
                         f"or a list, got {type(value).__name__}")
    return value


class CompensateSpec(BaseModel):
    """A node's undo action: a handler run (as a step) when the run compensates.

    It is written inline on the node it undoes. Its config templates may use the run input,
    the node's own output (``{{ <node id>.output }}``) and its ancestors' outputs.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    handler: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec | None = None
    """How the undo step is retried (default: the spec's ``defaults.retry``)."""


class NodeSpec(BaseModel):
    """One node: a handler called with its (templated) config once its dependencies finish."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    id: str = Field(min_length=1)
    handler: str = Field(min_length=1)
    dependencies: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec | None = None
    timeout: float | str | None = None
    """A limit for each attempt of the handler (seconds or a duration string such as ``"30s"``):
    an attempt that exceeds it fails with ``TimeoutError`` and is retried per ``retry``. Not for
    the built-ins that run in the workflow itself (``input``, ``output``, ``sleep``)."""
    when: str | bool | None = None
    """Run only if this (usually a single template) is truthy; otherwise the node is skipped."""
    foreach: str | list[Any] | None = None
    """Fan out: a template resolving (at run time) to a list, or a literal list. The handler runs
    once per element, concurrently, with ``{{ item }}`` (the element) and ``{{ index }}`` (its
    position) available in ``config``; the node's output is the list of results, in order."""
    max_concurrency: int | None = Field(None, ge=1)
    """With ``foreach``: how many elements run at once (default: 32)."""
    on_failure: OnFailure | None = None
    """``fail`` (default) fails the run; ``continue`` records the node as failed and goes on;
    ``compensate`` runs the ``compensate`` actions of the nodes that completed, in reverse wave
    order (deepest first), then fails the run with the node's error."""
    compensate: CompensateSpec | None = None
    """The undo action run for this node, once it completed, when a later failure compensates
    (``on_failure: compensate``). It is not part of the normal flow."""
    trigger: Literal["all_success", "all_done"] = "all_success"
    """``all_success``: skipped if a dependency was skipped or failed; ``all_done``: runs anyway
    (a skipped or failed dependency's output is ``null``)."""

    _timeout = field_validator("timeout", mode="before")(_check_timeout)
    _foreach = field_validator("foreach", mode="before")(_check_foreach)

    @model_validator(mode="after")
    def _gather_by_default(self) -> NodeSpec:
        # An ``output`` node without config gathers its dependencies' outputs, by id.
        if self.handler == "output" and not self.config:
            self.config = {dep: f"{{{{ {dep}.output }}}}" for dep in self.dependencies}
        return self

    def timeout_seconds(self) -> float | None:
        """``timeout`` in seconds (``None`` without a limit)."""
        return parse_duration(self.timeout) if self.timeout is not None else None


class Defaults(BaseModel):
    """Values applied to every node that does not set them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    retry: RetrySpec | None = None
    on_failure: OnFailure = "fail"


class DagSpec(BaseModel):
    """A runtime-defined workflow: nodes with dependencies, an input schema, defaults, output."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str | None = None
    description: str | None = None
    version: str | int | None = None
    """The spec's version, for people and tools: runs keep the spec they started with."""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else a team keeps with a spec (owner, ticket...); not read by durable."""
    max_concurrency: int | None = Field(None, ge=1)
    """How many nodes run at once (default: 32); a ``foreach`` node's elements count as one."""
    input: dict[str, Any] | None = None
    """A JSON-Schema subset checked against the run input (``type``, ``properties``, ``required``,
    ``items``, ``enum``, lengths, ``pattern``, ``format``, bounds: see ``durable.dag._schema``).
    A property the input leaves out is filled in with its ``default``, if it has one."""
    defaults: Defaults = Field(default_factory=Defaults)
    nodes: list[NodeSpec]
    output: Any = None
    """A template string or a mapping/list of templates resolved when every node finished;
    without it the run returns ``{node_id: output}`` of the nodes nothing depends on."""
    timeout: float | str | None = None
    """How long a run may take from its start (seconds or a duration string such as ``"30m"``):
    a run still unfinished then is cancelled, undoing its completed nodes that ``compensate``."""

    _timeout = field_validator("timeout", mode="before")(_check_timeout)

    def timeout_seconds(self) -> float | None:
        """``timeout`` in seconds (``None`` without a limit)."""
        return parse_duration(self.timeout) if self.timeout is not None else None

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON data (what the durable workflow receives as input)."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude_defaults=True)
        data["nodes"] = [n.model_dump(mode="json", exclude_defaults=True) for n in self.nodes]
        return data


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of spec files: the graph's fields at the top level or under ``dag``."""
    flat = DagSpec.model_json_schema()
    defs = flat.pop("$defs")
    defs["DagSpec"] = {**flat}
    outer = {k: v for k, v in flat["properties"].items() if k != "nodes"}
    nested = {
        "description": "The graph's fields under a 'dag' key, as stream-based engines' specs "
                       "have them; the other fields may sit beside it.",
        "additionalProperties": False,
        "properties": {**outer, "dag": {"$ref": "#/$defs/DagSpec"}},
        "required": ["dag"],
        "type": "object",
    }
    return {
        "$defs": defs,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "anyOf": [{"$ref": "#/$defs/DagSpec"}, nested],
        "description": flat.get("description", ""),
        "title": "DagSpec",
    }


def unnested(raw: Any) -> Any:
    """The spec with the graph's fields at the top level.

    Specs written for stream-based DAG engines nest the graph: ``{"name", "dag": {"nodes"}}``.
    """
    if isinstance(raw, dict) and isinstance(raw.get("dag"), dict) and "nodes" not in raw:
        return {**{k: v for k, v in raw.items() if k != "dag"}, **raw["dag"]}
    return raw


def _yaml_problem(exc: Exception) -> str:
    """A YAML error on one line: where, what, and in what (PyYAML's own text spans lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(exc).split())
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        where = f" at line {context_mark.line + 1}" if context_mark is not None else ""
        text += f" ({context}{where})"
    return text


_BOOL = "tag:yaml.org,2002:bool"


def _strict_bools(yaml: Any) -> Any:
    """A safe YAML loader reading only ``true``/``false`` as booleans (as YAML 1.2 does).

    YAML 1.1 also reads ``on``, ``off``, ``yes``, ``no``, ``y`` and ``n`` so: an input property
    or a config key named ``on`` would become ``True``.
    """
    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def load_file(path: str | Path) -> Any:
    """Read a spec file: ``.json``, or ``.yaml``/``.yml`` when PyYAML is installed.

    Raises:
        ValueError: the file cannot be parsed, or is YAML and PyYAML is missing.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            raise ValueError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the spec "
                "as JSON"
            ) from None
        try:
            return yaml.load(text, Loader=_strict_bools(yaml))  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
