"""Workflows in a module that turns its process's worker off, as an API in front of workers does.

``APP_WORLD`` (when set) is the world the module chooses for itself.
"""

from __future__ import annotations

import os

import durable
from durable import step, workflow

durable.configure(os.environ.get("APP_WORLD"), worker=False)


@step
def double(x: int) -> int:
    return 2 * x


@workflow
def doubled(x: int) -> int:
    return double(x)
