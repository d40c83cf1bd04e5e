"""Side-effect notes shared by workload modules."""

from __future__ import annotations

import os


def effect(name: str) -> None:
    """Note that a step body ran, in the file named by VERSIONED_EFFECTS (if set)."""
    path = os.environ.get("VERSIONED_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{name} {os.getpid()}\n")
