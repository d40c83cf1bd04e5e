"""Configuration: which world this process uses, and the runtime bound to it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from dataclasses import replace
from types import FrameType
from typing import Any

from durable._errors import RunNotFound
from durable._run import Run
from durable._runtime import Runtime, RuntimeOptions
from durable._serialization import ENGINE_DIR
from durable.world import World, open_world

DEFAULT_WORLD = "sqlite:///.durable/durable.db"

_runtime: Runtime | None = None
_lock = threading.Lock()
# Held while a runtime is being made: threads that use durable for the first time at once (a
# web app's first requests) must share one runtime, not each open a world and close the others'.
_configuring = threading.RLock()


def configure(
    world: str | World | None = None,
    *,
    worker: bool | None = None,
    lease_ttl: float | None = None,
    inline_wait_limit: float | None = None,
    poll_interval: float | None = None,
    max_concurrent_runs: int | None = None,
    force_replay: bool | None = None,
) -> Runtime:
    """Choose the world this process uses and tune how runs execute here.

    Each call changes what it names. Without ``world``, the world in use stays (and so do the
    settings not named here), so ``configure(force_replay=True)`` inside a test keeps the test's
    world; with a new ``world``, unnamed settings start from their defaults.

    Args:
        world: a URL (``sqlite:///path.db``, ``memory://``, ``aws://``) or a World object.
            Default: the world in use; before any, ``DURABLE_WORLD`` from the environment, else
            ``sqlite:///.durable/durable.db``.
        worker: whether this process runs the embedded worker, which executes due runs here
            (default: yes, starting when this process first starts or calls a run, waits for
            one or resumes a hook). ``True`` also starts it now, so runs left due or orphaned
            when a process last stopped go on at once: call ``configure(worker=True)`` as an
            app starts up (a FastAPI lifespan, say) rather than as a module is imported.
            ``False``: no worker here; the runs this process starts are left to other workers.
        lease_ttl: seconds before the runs of a dead process can be taken over.
        inline_wait_limit: sleeps and retry delays up to this many seconds wait in-process.
        poll_interval: how often the embedded worker looks for due runs.
        max_concurrent_runs: runs this process executes at once.
        force_replay: suspend and replay at every durable point (for testing workflows).

    Returns:
        The runtime now in use.
    """
    overrides: dict[str, Any] = {
        "worker": worker,
        "lease_ttl": lease_ttl,
        "inline_wait_limit": inline_wait_limit,
        "poll_interval": poll_interval,
        "max_concurrent_runs": max_concurrent_runs,
        "force_replay": force_replay,
    }
    with _configuring:
        return _replace_runtime(world, overrides)


def _replace_runtime(world: str | World | None, overrides: dict[str, Any]) -> Runtime:
    global _runtime
    current = _runtime
    keep = world is None and current is not None
    options = replace(current.options) if keep and current is not None else RuntimeOptions()
    for key, value in overrides.items():
        if value is not None:
            setattr(options, key, value)
    if overrides["force_replay"] is None and os.environ.get("DURABLE_FORCE_REPLAY") == "1":
        options.force_replay = True
    if keep and current is not None:
        opened = current.world
    else:
        target = world if world is not None else os.environ.get("DURABLE_WORLD", DEFAULT_WORLD)
        if world is None and target == DEFAULT_WORLD:
            _warn_if_testing()
        opened = open_world(target) if isinstance(target, str) else target
    runtime = Runtime(opened, options)
    with _lock:
        previous, _runtime = _runtime, runtime
    if previous is not None:
        previous.stop()
        if previous.world is not opened:
            previous.world.close()
    if overrides["worker"] is True:
        runtime.ensure_worker()
    return runtime


def _warn_if_testing() -> None:
    # A test that forgot the durable_world fixture would sleep for real and leave its runs in
    # the working directory's database, where a later worker resumes them (real side effects).
    if "PYTEST_CURRENT_TEST" in os.environ and "pytest" in sys.modules:
        warnings.warn(
            f"a test is using the default world ({DEFAULT_WORLD}): its runs persist in the "
            "working directory and its sleeps take real time. Use the durable_world fixture or "
            "durable.testing.world(), or choose a world with durable.configure(world=...) or "
            "DURABLE_WORLD",
            stacklevel=_outside_durable(),
        )


def _outside_durable() -> int:
    """The ``stacklevel`` of the first caller outside this package: the test's own line."""
    frame: FrameType | None = sys._getframe(2)  # the caller of the function that warns
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(ENGINE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _drain_at_exit() -> None:
    runtime = _runtime
    if runtime is None:
        return
    try:
        runtime.drain()
    except KeyboardInterrupt:
        # drain() said "interrupt to leave them to a worker": that is a choice, not a crash. An
        # exception out of this hook would print a traceback and still exit 0, and a normal exit
        # would then join the threads running steps, so the process ends here, as a Ctrl-C does.
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends it even sooner
        left = runtime.executing_runs()
        which = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
        said = f"left {len(left)} run(s) to a worker: {which}"
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stderr.write(f"{said} (a worker takes them over once their leases lapse)\n")
        sys.stderr.flush()
        os._exit(130)


# Threading's exit hooks run newest first, before the interpreter joins its threads: this one
# therefore runs while thread pools (registered earlier by concurrent.futures) still take work.
_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_drain_at_exit)


def use_runtime(runtime: Runtime | None) -> Runtime | None:
    """Swap the process's runtime (used by ``durable.testing``); returns the previous one."""
    global _runtime
    with _lock:
        previous, _runtime = _runtime, runtime
    return previous


def current_runtime() -> Runtime | None:
    """The runtime in use, if any has been made yet."""
    return _runtime


def get_runtime() -> Runtime:
    """The runtime in use, configured from the environment on first use."""
    runtime = _runtime
    if runtime is not None:
        return runtime
    with _configuring:
        return _runtime if _runtime is not None else configure()


def get_run(run_id: str) -> Run[Any]:
    """A handle on an existing run.

    Raises:
        RunNotFound: the world has no run with this id.
    """
    runtime = get_runtime()
    record = runtime.world.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return Run(run_id, runtime, record)
