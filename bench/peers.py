# Requires: dbos>=3.4 (peer package; see bench/requirements.txt). Measured with dbos 3.4.0.
"""Peer measurements for the durable-execution benchmark.

Peer packages (also listed in ``bench/requirements.txt``):
    dbos>=3.4

Two peers are measured on the same disk as our engine, so that its numbers
can be read against them:

1. **Raw SQLite** — the physical limit: a loop of single-row
   ``INSERT`` + ``COMMIT`` transactions into a fresh WAL database at a chosen
   ``synchronous`` level. No durable-execution engine can commit steps
   faster than this on the same disk with the same durability setting.
2. **DBOS** (``dbos`` on PyPI) with its SQLite system database: sequential
   workflows of ``steps`` sequential ``@DBOS.step()`` functions.

Each measurement runs in a child process (``python -m bench.peers ...``) so
that DBOS's global state, its background threads and its SQLAlchemy pool
never leak into the benchmark process, and so that both peers run in the
same process tree as the benchmark script. The child prints one JSON object
as the last line of its stdout.

DBOS SQLite settings: DBOS (checked in 3.4.0, ``dbos/_sys_db_sqlite.py``)
sets only ``busy_timeout=30000``, ``foreign_keys=ON`` and IMMEDIATE
transactions on each connection. It sets neither ``journal_mode`` nor
``synchronous``, so its system database runs with SQLite's defaults: the
rollback journal (``journal_mode=delete``, *not* WAL) and ``synchronous``
at the build's ``SQLITE_DEFAULT_SYNCHRONOUS`` (2 = FULL for CPython's usual
builds). The DBOS measurement deliberately keeps those defaults, and reports
the pragmas it actually observed on DBOS's own engine.

Command line::

    python -m bench.peers sqlite PATH N [SYNCHRONOUS]
    python -m bench.peers dbos WORKDIR [N_WORKFLOWS [STEPS]]

Typical use from the benchmark::

    from bench.peers import raw_sqlite_commits, dbos_steps_per_second

    print(raw_sqlite_commits("/work/tmp/raw.sqlite", 2000, "NORMAL"))
    try:
        print(dbos_steps_per_second("/work/tmp/dbos", 1000, 3))
    except RuntimeError as exc:
        print(f"DBOS: unavailable ({exc})")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "dbos_run",
    "dbos_steps_per_second",
    "main",
    "raw_sqlite_commits",
    "raw_sqlite_run",
]

#: Accepted values of SQLite's ``synchronous`` pragma.
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: Default time limit, in seconds, for one child measurement.
DEFAULT_TIMEOUT_S = 600.0

#: Workflows run before timing starts in the DBOS measurement.
DBOS_WARMUP_WORKFLOWS = 20

#: Commits made before timing starts in the raw SQLite measurement.
SQLITE_WARMUP_COMMITS = 20

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SQLITE_SIDECARS = ("", "-wal", "-shm", "-journal")


# --------------------------------------------------------------------------
# Parent side: spawn a child and read its JSON.
# --------------------------------------------------------------------------


def _run_child(args: Sequence[str], what: str, timeout: float | None) -> dict[str, Any]:
    """Runs ``python -m bench.peers ARGS`` and returns its JSON result.

    Args:
        args: Command-line arguments after ``-m bench.peers``.
        what: Name of the peer, for error messages.
        timeout: Seconds to wait for the child, or None for no limit.

    Returns:
        The JSON object the child printed as the last line of its stdout.

    Raises:
        RuntimeError: If the child could not be run, timed out, failed, or
            printed no valid result; the message gives the reason.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", "bench.peers", *args]
    try:
        proc = subprocess.run(
            cmd,
            cwd=str(_REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{what} measurement timed out after {exc.timeout:.0f}s"
        ) from None
    except OSError as exc:
        raise RuntimeError(f"could not start {what} measurement: {exc}") from exc

    result: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    if result is not None and "error" in result:
        raise RuntimeError(str(result["error"]))
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(
            f"{what} measurement failed (exit {proc.returncode}): {tail}"
        )
    return result


def raw_sqlite_run(
    path: str,
    n: int,
    synchronous: str = "NORMAL",
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Measures raw SQLite commits in a child process and returns the details.

    See :func:`raw_sqlite_commits`; this returns the full result instead of
    only the rate.

    Args:
        path: Database file to create. Any existing file at this path (and
            its ``-wal``/``-shm``/``-journal`` sidecars) is deleted first.
        n: Number of timed INSERT+COMMIT transactions.
        synchronous: SQLite ``synchronous`` level: OFF, NORMAL, FULL or EXTRA.
        timeout: Seconds to wait for the child, or None for no limit.

    Returns:
        A dict with keys ``commits_per_s``, ``n``, ``elapsed_s``,
        ``journal_mode``, ``synchronous``, ``sqlite_version`` and ``path``.

    Raises:
        ValueError: If ``n`` or ``synchronous`` is invalid.
        RuntimeError: If the measurement fails.
    """
    level = _check_synchronous(synchronous)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _run_child(["sqlite", str(path), str(n), level], "raw SQLite", timeout)


def raw_sqlite_commits(path: str, n: int, synchronous: str = "NORMAL") -> float:
    """Measures the physical commit limit of the disk with raw sqlite3.

    In a child process, creates a fresh WAL database at ``path``, sets
    ``PRAGMA synchronous`` to ``synchronous``, makes a few untimed warm-up
    commits, then times ``n`` transactions of one single-row INSERT each,
    every one followed by its own COMMIT.

    Args:
        path: Database file to create. Any existing file at this path (and
            its ``-wal``/``-shm``/``-journal`` sidecars) is deleted first.
        n: Number of timed INSERT+COMMIT transactions.
        synchronous: SQLite ``synchronous`` level: OFF, NORMAL, FULL or EXTRA.

    Returns:
        Commits per second.

    Raises:
        ValueError: If ``n`` or ``synchronous`` is invalid.
        RuntimeError: If the measurement fails.
    """
    return float(raw_sqlite_run(path, n, synchronous)["commits_per_s"])


def dbos_run(
    workdir: str,
    n_workflows: int = 1000,
    steps: int = 3,
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Measures DBOS in a child process and returns the details.

    See :func:`dbos_steps_per_second`; this returns the full result instead
    of only the rate.

    Args:
        workdir: Directory for DBOS's SQLite system database
            (``WORKDIR/dbos_sys.sqlite``, recreated fresh). Created if missing.
        n_workflows: Number of timed workflows.
        steps: Steps per workflow.
        timeout: Seconds to wait for the child, or None for no limit.

    Returns:
        A dict with keys ``steps_per_s``, ``workflows_per_s``,
        ``n_workflows``, ``steps``, ``elapsed_s``, ``warmup_workflows``,
        ``dbos_version``, ``sqlite_version``, ``pragmas`` (journal_mode,
        synchronous, busy_timeout, foreign_keys as seen on DBOS's engine) and
        ``system_database_url``.

    Raises:
        ValueError: If ``n_workflows`` or ``steps`` is invalid.
        RuntimeError: If DBOS is not installed, cannot be launched, or the
            measurement fails; the message gives the reason.
    """
    if n_workflows < 1:
        raise ValueError(f"n_workflows must be >= 1, got {n_workflows}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return _run_child(
        ["dbos", str(workdir), str(n_workflows), str(steps)], "DBOS", timeout
    )


def dbos_steps_per_second(
    workdir: str, n_workflows: int = 1000, steps: int = 3
) -> float:
    """Measures DBOS step throughput with its SQLite system database.

    In a child process, configures DBOS with
    ``system_database_url="sqlite:///WORKDIR/dbos_sys.sqlite"`` (a fresh
    file, DBOS's default journal and synchronous settings), defines one
    workflow of ``steps`` sequential ``@DBOS.step()`` functions that each
    return a small value, launches DBOS, runs
    :data:`DBOS_WARMUP_WORKFLOWS` untimed workflows, then times
    ``n_workflows`` workflows called directly one after another, and
    destroys DBOS.

    Args:
        workdir: Directory for DBOS's system database. Created if missing.
        n_workflows: Number of timed workflows.
        steps: Steps per workflow.

    Returns:
        Steps per second: ``n_workflows * steps / elapsed``.

    Raises:
        ValueError: If ``n_workflows`` or ``steps`` is invalid.
        RuntimeError: If DBOS is not installed, cannot be launched, or the
            measurement fails; the message gives the reason.
    """
    return float(dbos_run(workdir, n_workflows, steps)["steps_per_s"])


# --------------------------------------------------------------------------
# Child side: the measurements themselves.
# --------------------------------------------------------------------------


def _check_synchronous(synchronous: str) -> str:
    """Validates and normalizes a ``synchronous`` level.

    Args:
        synchronous: Level name, any case.

    Returns:
        The upper-case level name.

    Raises:
        ValueError: If the level is not one of :data:`SYNCHRONOUS_LEVELS`.
    """
    level = str(synchronous).strip().upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise ValueError(
            f"synchronous must be one of {SYNCHRONOUS_LEVELS}, got {synchronous!r}"
        )
    return level


def _remove_sqlite_files(path: Path) -> None:
    """Deletes a SQLite database file and its sidecar files, if present.

    Args:
        path: The database file.
    """
    for suffix in _SQLITE_SIDECARS:
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


def _child_sqlite(path: str, n: int, synchronous: str) -> dict[str, Any]:
    """Runs the raw SQLite measurement in this process.

    Args:
        path: Database file to create fresh.
        n: Number of timed INSERT+COMMIT transactions.
        synchronous: SQLite ``synchronous`` level.

    Returns:
        The result dict described in :func:`raw_sqlite_run`.
    """
    import sqlite3

    level = _check_synchronous(synchronous)
    db = Path(path).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    _remove_sqlite_files(db)

    # Autocommit mode: transactions are explicit BEGIN/COMMIT below.
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        journal_mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute(f"PRAGMA synchronous={level}")
        sync_value = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        payload = b"x" * 64
        sql = "INSERT INTO t (v) VALUES (?)"

        for _ in range(SQLITE_WARMUP_COMMITS):
            conn.execute("BEGIN")
            conn.execute(sql, (payload,))
            conn.execute("COMMIT")

        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN")
            conn.execute(sql, (payload,))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()

    return {
        "peer": "sqlite",
        "commits_per_s": n / elapsed,
        "n": n,
        "elapsed_s": elapsed,
        "journal_mode": journal_mode,
        "synchronous": level,
        "synchronous_value": sync_value,
        "sqlite_version": sqlite3.sqlite_version,
        "path": str(db),
    }


def _child_dbos(workdir: str, n_workflows: int, steps: int) -> dict[str, Any]:
    """Runs the DBOS measurement in this process.

    Args:
        workdir: Directory for DBOS's system database.
        n_workflows: Number of timed workflows.
        steps: Steps per workflow.

    Returns:
        The result dict described in :func:`dbos_run`.

    Raises:
        RuntimeError: If DBOS cannot be imported or launched.
    """
    import sqlite3

    try:
        from importlib.metadata import version as _pkg_version

        from dbos import DBOS, DBOSConfig  # type: ignore[import-not-found,unused-ignore]
    except Exception as exc:  # ImportError, or a broken install
        raise RuntimeError(
            f"dbos is not importable ({type(exc).__name__}: {exc}); "
            "install it with: pip install -r bench/requirements.txt"
        ) from exc
    dbos_version = _pkg_version("dbos")

    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    db = wd / "dbos_sys.sqlite"
    _remove_sqlite_files(db)
    url = f"sqlite:///{db}"

    def make_step(i: int) -> Any:
        def step(x: int) -> int:
            return x + i

        step.__name__ = step.__qualname__ = f"bench_step_{i}"
        return DBOS.step(name=f"bench_step_{i}")(step)

    config: DBOSConfig = {
        "name": "durable-bench-peer",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    try:
        inst = DBOS(config=config)
        step_fns = [make_step(i) for i in range(steps)]

        @DBOS.workflow(name="bench_workflow")
        def bench_workflow(x: int) -> int:
            for fn in step_fns:
                x = fn(x)
            return x

        DBOS.launch()
    except Exception as exc:
        raise RuntimeError(
            f"DBOS {dbos_version} could not be launched: {type(exc).__name__}: {exc}"
        ) from exc

    try:
        expected = sum(range(steps))
        for k in range(DBOS_WARMUP_WORKFLOWS):
            assert bench_workflow(k) == k + expected

        t0 = time.perf_counter()
        for k in range(n_workflows):
            bench_workflow(k)
        elapsed = time.perf_counter() - t0

        pragmas: dict[str, Any] = {}
        with inst._sys_db.engine.connect() as c:  # DBOS's own engine and connect hooks
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys"):
                pragmas[name] = c.exec_driver_sql(f"PRAGMA {name}").scalar()
        sync_names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        pragmas["synchronous_name"] = sync_names.get(pragmas["synchronous"], "?")
    finally:
        DBOS.destroy(destroy_registry=True)

    total_steps = n_workflows * steps
    return {
        "peer": "dbos",
        "steps_per_s": total_steps / elapsed,
        "workflows_per_s": n_workflows / elapsed,
        "n_workflows": n_workflows,
        "steps": steps,
        "elapsed_s": elapsed,
        "warmup_workflows": DBOS_WARMUP_WORKFLOWS,
        "dbos_version": dbos_version,
        "sqlite_version": sqlite3.sqlite_version,
        "pragmas": pragmas,
        "system_database_url": url,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of the child measurements.

    Prints one JSON object on the last line of stdout: the result, or
    ``{"error": "..."}`` on failure.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit code: 0 on success, 1 on failure, 2 on bad usage.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m bench.peers sqlite PATH N [SYNCHRONOUS]\n"
        "       python -m bench.peers dbos WORKDIR [N_WORKFLOWS [STEPS]]"
    )
    try:
        if len(args) >= 3 and args[0] == "sqlite" and len(args) <= 4:
            result = _child_sqlite(
                args[1], int(args[2]), args[3] if len(args) > 3 else "NORMAL"
            )
        elif len(args) >= 2 and args[0] == "dbos" and len(args) <= 4:
            n_wf = int(args[2]) if len(args) > 2 else 1000
            n_steps = int(args[3]) if len(args) > 3 else 3
            result = _child_dbos(args[1], n_wf, n_steps)
        else:
            print(usage, file=sys.stderr)
            return 2
    except Exception as exc:  # noqa: BLE001 - any failure becomes a JSON error for the parent
        reason = (
            str(exc)
            if isinstance(exc, RuntimeError)
            else f"{type(exc).__name__}: {exc}"
        )
        print(json.dumps({"error": reason}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
