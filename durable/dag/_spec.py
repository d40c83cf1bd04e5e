"""The DAG spec format, modelled with pydantic, and loading it from JSON or YAML files."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from durable._options import RetryPolicy

__all__ = ["DagSpec", "Defaults", "NodeSpec", "RetrySpec", "load_file"]


class RetrySpec(BaseModel):
    """How a node's step is retried (the fields of :class:`durable.RetryPolicy`)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1)
    initial_delay: float = Field(1.0, ge=0)
    backoff: float = Field(2.0, ge=1)
    max_delay: float = Field(60.0, ge=0)
    jitter: bool = True

    def policy(self) -> RetryPolicy:
        """The equivalent :class:`durable.RetryPolicy`."""
        return RetryPolicy(**self.model_dump())


class NodeSpec(BaseModel):
    """One node: a handler called with its (templated) config once its dependencies finish."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    handler: str = Field(min_length=1)
    dependencies: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySpec | None = None
    when: str | bool | None = None
    """Run only if this (usually a single template) is truthy; otherwise the node is skipped."""
    on_failure: Literal["fail", "continue"] | None = None
    """``fail`` (default) fails the run; ``continue`` records the node as failed and goes on."""
    trigger: Literal["all_success", "all_done"] = "all_success"
    """``all_success``: skipped if a dependency was skipped or failed; ``all_done``: runs anyway
    (a skipped or failed dependency's output is ``null``)."""


class Defaults(BaseModel):
    """Values applied to every node that does not set them."""

    model_config = ConfigDict(extra="forbid")

    retry: RetrySpec | None = None
    on_failure: Literal["fail", "continue"] = "fail"


class DagSpec(BaseModel):
    """A runtime-defined workflow: nodes with dependencies, an input schema, defaults, output."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    input: dict[str, Any] | None = None
    """A JSON-Schema subset checked against the run input (``type``, ``properties``,
    ``required``, ``items``)."""
    defaults: Defaults = Field(default_factory=Defaults)
    nodes: list[NodeSpec]
    output: Any = None
    """A template string or a mapping/list of templates resolved when every node finished;
    without it the run returns ``{node_id: output}`` of the nodes nothing depends on."""

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON data (what the durable workflow receives as input)."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude_defaults=True)
        data["nodes"] = [n.model_dump(mode="json", exclude_defaults=True) for n in self.nodes]
        return data


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
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
