"""Side-effect notes shared by workload modules."""

from __future__ import annotations

import os


def effect(name: str, variable: str = "VERSIONED_EFFECTS") -> None:
    """Note that a step body ran: append ``"{name} {pid}"`` to the file named by ``variable``.

    Nothing is noted when the variable is not set.
    """
    path = os.environ.get(variable)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{name} {os.getpid()}\n")
