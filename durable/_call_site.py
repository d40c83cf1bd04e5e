"""Where the workflow's code made a call: the first frame up the stack outside durable.

Computed only on error paths (a divergence), so the hot path pays nothing for it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB = tuple(
    os.path.abspath(p) + os.sep
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
# Where durable enters the workflow's own code: past these frames there is no workflow code left
# to name, only whoever started the run (a direct call's caller would be named wrongly).
_ENTRIES = frozenset(
    os.path.join(_PACKAGE, name) for name in ("_runtime.py", "_replay.py")
)


def call_site() -> str | None:
    """``path:line in function`` of the workflow code that called into durable, if on the stack.

    ``path`` is relative to the working directory when under it. None when the call came from
    durable itself (a step handed to ``parallel()`` runs from durable's code, not the workflow's).
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if path in _ENTRIES:
            return None
        if not (
            path.startswith(_PACKAGE) or path.startswith(_STDLIB) or path.startswith("<frozen")
        ):
            return f"{_shown(path)}:{frame.f_lineno} in {frame.f_code.co_qualname}"
        frame = frame.f_back
    return None


def _shown(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith(os.pardir) else relative
