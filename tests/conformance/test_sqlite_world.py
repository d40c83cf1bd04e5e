"""What only the SQLite world promises: its file, URL, schema, errors, locking and fork."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable._errors import ConfigurationError, LeaseLost, WorldError
from durable.world import NewEvent, NewRun, RunUpdate, open_world
from worlds.sqlite import SqliteWorld, _connection, _schema, _sql, _world
from worlds.sqlite._world import DEFAULT_URL, parse_url

ROOT = Path(__file__).resolve().parents[2]
TTL = 30.0
A = "worker-a"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "durable.db"


@pytest.fixture
def world(db: Path) -> Iterator[SqliteWorld]:
    opened = SqliteWorld(f"sqlite:///{db}")
    yield opened
    opened.close()


def url(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


def populate(world: SqliteWorld, run_id: str = "run-1") -> None:
    world.create_run(NewRun(run_id, "wf", b"input"), owner=A, lease_ttl=TTL)
    world.append(run_id, A, [NewEvent("step_completed", "1", "charge", b"paid")])


def pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# -- URLs and opening -----------------------------------------------------------------------------


def test_open_world_builds_a_sqlite_world(db: Path) -> None:
    world = open_world(url(db))
    try:
        assert isinstance(world, SqliteWorld)
        assert world.url == url(db)
        assert world.path == db
    finally:
        world.close()


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with SqliteWorld("sqlite:///nested/dirs/runs.db") as world:
        assert world.path == tmp_path / "nested" / "dirs" / "runs.db"
        populate(world)
    assert (tmp_path / "nested" / "dirs" / "runs.db").is_file()


def test_default_url_creates_the_durable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with SqliteWorld() as world:
        assert world.url == DEFAULT_URL
        assert world.path == tmp_path / ".durable" / "durable.db"
    assert (tmp_path / ".durable" / "durable.db").is_file()


def test_absolute_url(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.db"
    assert url(path).startswith("sqlite:////")
    assert parse_url(url(path)) == (path, "NORMAL", 30.0)


def test_url_parameters() -> None:
    path, synchronous, busy = parse_url("sqlite:////x/y.db?synchronous=full&busy_timeout=2.5")
    assert (path, synchronous, busy) == (Path("/x/y.db"), "FULL", 2.5)
    assert parse_url("sqlite:////x/my%20runs.db")[0] == Path("/x/my runs.db")


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://relative.db",
        "postgres:///x.db",
        "sqlite:///x.db?synchronous=LOUD",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?busy_timeout=-1",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?busy_timeout=nan",
        "sqlite:///x.db?journal=delete",
        "sqlite:///:memory:",
    ],
)
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteWorld(bad)


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(WorldError, match="cannot create the directory"):
        SqliteWorld(url(blocker / "sub" / "x.db"))


def test_data_survives_reopening(db: Path) -> None:
    with SqliteWorld(url(db)) as world:
        populate(world)
        world.append("run-1", A, [NewEvent("run_completed")], RunUpdate("completed", output=b"42"))
        world.request_cancel("run-1")
        world.create_run(NewRun("run-2", "wf", b"", parent_id="run-1"), owner=None, lease_ttl=1)
        before = (world.list_runs(), world.read_events("run-1"), world.read_events("run-2"))
    with SqliteWorld(url(db)) as world:
        after = (world.list_runs(), world.read_events("run-1"), world.read_events("run-2"))
        assert after == before
        record = world.get_run("run-1")
        assert record is not None
        assert (record.status, record.output, record.last_seq) == ("completed", b"42", 3)
        assert record.lease_owner == A
        world.append("run-1", A, [NewEvent("x")])
        assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3, 4]


def test_clock_is_used(db: Path) -> None:
    with SqliteWorld(url(db), clock=lambda: 123.0) as world:
        assert world.now() == 123.0
        record, _ = world.create_run(NewRun("r", "wf", b""), owner=None, lease_ttl=1)
        assert record.created_at == 123.0


# -- pragmas and schema ---------------------------------------------------------------------------


def test_wal_journal_and_default_settings(world: SqliteWorld, db: Path) -> None:
    assert pragma(db, "journal_mode") == "wal"
    conn = world._conn
    assert conn is not None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert world.synchronous == "NORMAL" and world.busy_timeout == 30.0


def test_synchronous_and_busy_timeout_from_url(db: Path) -> None:
    with SqliteWorld(url(db, "?synchronous=FULL&busy_timeout=1.5")) as world:
        conn = world._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1500


def test_schema_version_and_application_id(world: SqliteWorld, db: Path) -> None:
    assert pragma(db, "user_version") == _schema.schema_version() >= 1
    assert pragma(db, "application_id") == _schema.APPLICATION_ID


def test_empty_existing_file_becomes_a_database(db: Path) -> None:
    db.write_bytes(b"")
    with SqliteWorld(url(db)) as world:
        populate(world)
    assert pragma(db, "user_version") == _schema.schema_version()


def test_migration_from_an_older_version(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteWorld(url(db)) as world:  # a file written by "the previous release"
        populate(world)
    old = _schema.schema_version()
    applied: list[int] = []

    def add_notes(conn: sqlite3.Connection) -> None:
        applied.append(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute("CREATE TABLE notes (run_id TEXT PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO notes SELECT id, 'migrated' FROM runs")

    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, add_notes])
    with SqliteWorld(url(db)) as world:
        assert applied == [old]
        record = world.get_run("run-1")
        assert record is not None and record.last_seq == 2
        world.append("run-1", A, [NewEvent("after")])
    with SqliteWorld(url(db)):
        assert applied == [old]  # not applied twice
    assert pragma(db, "user_version") == old + 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT * FROM notes").fetchall() == [("run-1", "migrated")]
    conn.close()


def test_failed_migration_changes_nothing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteWorld(url(db)) as world:
        populate(world)
    old = _schema.schema_version()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, broken])
    with pytest.raises(WorldError) as info:
        SqliteWorld(url(db))
    assert str(db) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    monkeypatch.undo()
    assert pragma(db, "user_version") == old
    with SqliteWorld(url(db)) as world:
        assert world.get_run("run-1") is not None
        conn = world._conn
        assert conn is not None
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables


def test_newer_schema_version_asks_to_upgrade(db: Path) -> None:
    with SqliteWorld(url(db)) as world:
        populate(world)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {_schema.schema_version() + 1}")
    conn.close()
    content = db.read_bytes()
    with pytest.raises(WorldError) as info:
        SqliteWorld(url(db))
    message = str(info.value)
    assert str(db) in message and "newer version of durable" in message
    assert "upgrade durable" in message
    assert db.read_bytes() == content


def test_another_applications_database_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    content = db.read_bytes()
    with pytest.raises(WorldError, match="not a durable one") as info:
        SqliteWorld(url(db))
    assert str(db) in str(info.value)
    assert db.read_bytes() == content
    assert not Path(f"{db}-wal").exists()


def test_a_copy_without_its_log_is_refused_not_opened_empty(tmp_path: Path) -> None:
    original = tmp_path / "durable.db"
    copy = tmp_path / "copy" / "durable.db"
    copy.parent.mkdir()
    with SqliteWorld(url(original)) as world:
        populate(world)
        copy.write_bytes(original.read_bytes())  # the runs are still in durable.db-wal
        content = copy.read_bytes()
        with pytest.raises(WorldError) as info:
            SqliteWorld(url(copy))
        message = str(info.value)
        assert str(copy) in message and "without its -wal file" in message
        assert ".backup" in message
        assert copy.read_bytes() == content and not Path(f"{copy}-wal").exists()
        assert world.get_run("run-1") is not None
    # Copied with its log, the same file opens with its runs.
    copy.unlink()
    with SqliteWorld(url(original)) as world:
        populate(world, "run-2")
        for suffix in ("", "-wal"):
            Path(f"{copy}{suffix}").write_bytes(Path(f"{original}{suffix}").read_bytes())
    with SqliteWorld(url(copy)) as reopened:
        assert reopened.get_run("run-2") is not None


def test_processes_creating_a_new_file_at_once(tmp_path: Path) -> None:
    db = tmp_path / "race" / "new.db"
    script = (
        "import sys\n"
        "from durable.world import NewRun, open_world\n"
        "sys.stdin.readline()\n"
        "w = open_world(sys.argv[1])\n"
        "for i in range(20):\n"
        "    w.create_run(NewRun(f'{sys.argv[2]}-{i}', 'wf', b''), owner=None, lease_ttl=1)\n"
        "w.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url(db), f"p{i}"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for i in range(4)
    ]
    time.sleep(0.5)  # let every interpreter start before any opens the file
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors
    with SqliteWorld(url(db)) as world:
        assert world.count_runs() == {"pending": 80}


def test_new_files_get_small_pages_and_existing_files_keep_theirs(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    with SqliteWorld(url(fresh)) as world:
        conn = world._conn
        assert conn is not None
        assert conn.execute("PRAGMA page_size").fetchone()[0] == _world.PAGE_SIZE
        checkpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert checkpoint == _world.CHECKPOINT_BYTES // _world.PAGE_SIZE
    older = tmp_path / "older.db"
    conn = sqlite3.connect(older)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE first_write_fixes_the_page_size (x)")
    conn.execute("DROP TABLE first_write_fixes_the_page_size")
    conn.close()
    with SqliteWorld(url(older)) as world:
        populate(world)
        conn = world._conn
        assert conn is not None
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
            _world.CHECKPOINT_BYTES // 4096
        )


# -- layout and the common path -------------------------------------------------------------------


def inline_run(world: SqliteWorld, run_id: str, steps: int = 3) -> None:
    """What the engine does for a workflow executed inline."""
    world.create_run(NewRun(run_id, "wf", b'{"args":[3],"kwargs":{}}'), owner=A, lease_ttl=TTL)
    for i in range(1, steps + 1):
        world.append(run_id, A, [NewEvent("step_completed", str(i), "work", b"4")])
    world.append(
        run_id, A, [NewEvent("run_completed")], RunUpdate("completed", output=b"4", release=True)
    )


def test_inline_runs_write_few_pages(
    world: SqliteWorld, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each commit appends every page it dirtied to the log; the layout keeps an inline run to
    # about ten (see _schema). A page more per run on average means a new index or a row that
    # moved; fewer is welcome (tighten the bounds).
    # The log's growth is the measure: no checkpoint may restart it meanwhile.
    monkeypatch.setattr(_connection, "BACKGROUND_CHECKPOINT_ROWS", 10**9)
    conn = world._conn
    assert conn is not None
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    frame = conn.execute("PRAGMA page_size").fetchone()[0] + 24
    wal = Path(f"{db}-wal")
    ids = [f"wrun_{random.Random(i).getrandbits(128):032x}" for i in range(300)]
    for run_id in ids[:50]:
        inline_run(world, run_id)
    create_and_finish = step = 0
    done = RunUpdate("completed", output=b"4", release=True)
    for run_id in ids[50:]:
        start = wal.stat().st_size
        world.create_run(NewRun(run_id, "wf", b"[]"), owner=A, lease_ttl=TTL)
        created = wal.stat().st_size
        world.append(run_id, A, [NewEvent("step_completed", "1", "work", b"4")])
        stepped = wal.stat().st_size
        world.append(run_id, A, [NewEvent("run_completed")], done)
        create_and_finish += created - start + wal.stat().st_size - stepped
        step += stepped - created
    assert step / frame / 250 < 1.1
    assert create_and_finish / frame / 250 < 9


def _runs_in_database_file(db: Path) -> int:
    # Reads the database file alone, not the log (immutable: no locks, no log).
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # caught mid-copy
        return -1


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("durable-checkpoint:")]


def test_the_log_is_copied_back_beside_the_writes(db: Path) -> None:
    before = set(_checkpoint_threads())
    world = SqliteWorld(url(db))
    conn = world._conn
    assert conn is not None
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer never copies the log itself
    for i in range(400):  # about 3,600 rows: three times BACKGROUND_CHECKPOINT_ROWS
        inline_run(world, f"run-{i}")
    deadline = time.monotonic() + 10
    copied = _runs_in_database_file(db)
    while copied <= 0 and time.monotonic() < deadline:
        # A pass the writes kept busy copies part of the log: ask again, as later writes would.
        world._checkpointer.request()
        time.sleep(0.02)
        copied = _runs_in_database_file(db)
    assert copied > 0
    assert len(world.list_runs(limit=500)) == 400
    started = set(_checkpoint_threads()) - before
    assert len(started) == 1
    # Worlds of one file share the thread; the last to close stops it.
    other = SqliteWorld(url(db))
    for i in range(400):
        inline_run(other, f"other-{i}")
    assert set(_checkpoint_threads()) - before == started
    world.close()
    world.close()  # closing twice does not stop it for the other world
    assert all(t.is_alive() for t in started)
    other.close()
    assert not any(t.is_alive() for t in started)


RUNS_SCANS = {"SCAN r", "SCAN runs", "SCAN TABLE runs AS r", "SCAN TABLE runs"}
"""How EXPLAIN QUERY PLAN reports reading all of runs (SQLite < 3.36 says ``SCAN TABLE``)."""


def test_hot_queries_use_their_indexes(db: Path) -> None:
    # SQLite only uses a partial index for a query whose WHERE implies the index's: no query that
    # runs per step or per poll may fall back to reading every run, with or without statistics.
    clock = [1000.0]
    with SqliteWorld(url(db), clock=lambda: clock[0]) as world:
        for i in range(200):
            run_id = f"r-{i}"
            owner = None if i % 10 == 0 else f"host:{i % 3}:x"
            world.create_run(NewRun(run_id, f"wf{i % 4}", b"in"), owner=owner, lease_ttl=TTL)
            if owner is None:
                continue
            world.append(run_id, owner, [NewEvent("step_completed", "1", "s", b"x")])
            if i % 10 == 1:
                update = RunUpdate("suspended", wake_at=clock[0] + i, release=True)
            elif i % 10 == 2:
                update = RunUpdate("suspended", wake_at=None, release=True)
            elif i % 10 != 3:
                update = RunUpdate("completed", output=b"o", release=True)
            else:
                continue
            world.append(run_id, owner, [], update)
            clock[0] += 1
        conn = world._conn
        assert conn is not None
        now = clock[0]
        claim = {"limit": 5, "now": now, "dead": "[]", "names": '["wf1"]'}
        queries: dict[str, tuple[str, Any]] = {
            **{f"claim {i}": (sql, claim) for i, sql in enumerate(_sql._CLAIM[False])},
            **{f"claim {i} by name": (sql, claim) for i, sql in enumerate(_sql._CLAIM[True])},
            "next due": (_sql._NEXT_DUE[False], claim),
            "next due by name": (_sql._NEXT_DUE[True], claim),
            "live owners": (_sql._LIVE_OWNERS, (now,)),
            "renew": (_sql._RENEW, (now, "host:1:x")),
            "append": (_sql._APPEND_ONE, ("r-3", "host:0:x", "k", None, None, None, now)),
            "append check": (_sql._APPEND_CHECK, ("r-3", "host:0:x")),
            "get": (_sql._GET_RUN, ("r-3",)),
            "read events": (_sql._READ_EVENTS, ("r-3", 0)),
            "create": (_sql._INSERT_RUN, ("new", "wf", "running", now, None, A, now, None)),
            "list": (_sql._LIST_RUNS, (None, None, 10)),
        }
        for analyze in (False, True):
            if analyze:
                conn.execute("ANALYZE")
            for name, (sql, params) in queries.items():
                plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
                context = (name, analyze, plan)
                # A SCAN of runs must be of an index (renew_leases walks runs_lease), except for
                # list_runs, which reads the table newest first and stops at the limit.
                for step in plan:
                    scanned = step.split(" USING ")[0]
                    if scanned in RUNS_SCANS and name != "list":
                        assert "USING COVERING INDEX runs_lease" in step, context
                    assert name != "list" or "TEMP B-TREE" not in step, context


def test_payloads_stay_out_of_the_log(world: SqliteWorld, db: Path) -> None:
    big = os.urandom(50_000)
    world.create_run(NewRun("run-1", "wf", big), owner=A, lease_ttl=TTL)
    world.append("run-1", A, [NewEvent("step_completed", "1", "s", b"x")])
    world.append("run-1", A, [], RunUpdate("suspended", wake_at=None, output=b"first"))
    world.append("run-1", A, [], RunUpdate("failed", output=big[:10], error=big[10:], release=True))
    record = world.get_run("run-1")
    assert record is not None
    assert (record.input, record.output, record.error) == (big, big[:10], big[10:])
    assert record.last_seq == 2
    for after in (-5, -1, 0):
        assert [e.seq for e in world.read_events("run-1", after)] == [1, 2]
    assert world.delete_runs(world.now() + 1) == 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    conn.close()


def test_a_log_cannot_outgrow_its_key_range(world: SqliteWorld, db: Path) -> None:
    populate(world)
    conn = sqlite3.connect(db)
    (run_no,) = conn.execute("SELECT run_no FROM runs WHERE id = 'run-1'").fetchone()
    key = _schema.event_key(run_no, _schema.MAX_SEQ)
    conn.execute("INSERT INTO events (key, kind, created_at) VALUES (?, 'filler', 0)", (key,))
    conn.commit()
    conn.close()
    for events in ([NewEvent("one")], [NewEvent("two"), NewEvent("three")]):
        with pytest.raises(WorldError, match="cannot record more than"):
            world.append("run-1", A, events)
    record = world.get_run("run-1")
    assert record is not None and record.last_seq == _schema.MAX_SEQ and record.output is None
    world.append("run-1", A, [], RunUpdate("completed", output=b"done", release=True))
    record = world.get_run("run-1")
    assert record is not None and record.output == b"done" and record.status == "completed"


def test_create_run_is_idempotent_at_the_same_instant(db: Path) -> None:
    # runs is keyed by (created_at, id): the same id at the same time is still the same run.
    with SqliteWorld(url(db), clock=lambda: 1000.0) as world:
        first, created = world.create_run(NewRun("x", "wf", b"1"), owner=None, lease_ttl=TTL)
        assert created
        again, created = world.create_run(NewRun("x", "wf", b"2"), owner=A, lease_ttl=TTL)
        assert not created and again == first


def test_creation_order_survives_deleting_the_newest_run(db: Path) -> None:
    with SqliteWorld(url(db), clock=lambda: 1000.0) as world:
        world.create_run(NewRun("x", "wf", b""), owner=None, lease_ttl=TTL)
        world.create_run(NewRun("y", "wf", b""), owner=A, lease_ttl=TTL)
        world.append("y", A, [], RunUpdate("completed", release=True))
        assert world.delete_runs(1001.0) == 1
        world.create_run(NewRun("w", "wf", b""), owner=None, lease_ttl=TTL)
        assert [r.id for r in world.claim_due(A, TTL, 10)] == ["x", "w"]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a database\n" * 500, b"short", bytes(range(256)) * 64],
    ids=["text", "short", "binary"],
)
def test_garbage_file_is_reported_and_left_alone(db: Path, garbage: bytes) -> None:
    db.write_bytes(garbage)
    with pytest.raises(WorldError) as info:
        SqliteWorld(url(db))
    message = str(info.value)
    assert str(db) in message
    assert "not a valid durable database or is corrupt" in message
    assert "backup" in message and "DURABLE_WORLD" in message
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]


def test_damaged_pages_are_reported(db: Path) -> None:
    with SqliteWorld(url(db)) as world:
        for i in range(200):
            populate(world, f"run-{i}")
    data = bytearray(db.read_bytes())
    page = pragma(db, "page_size")
    assert isinstance(page, int)
    noise = random.Random(7)
    for start in range(2 * page, len(data), 3 * page):
        data[start : start + page] = noise.randbytes(page)
    db.write_bytes(bytes(data))
    with pytest.raises(WorldError) as info:
        world = SqliteWorld(url(db))
        try:
            world.list_runs(limit=1000)
            for i in range(200):
                world.read_events(f"run-{i}")
        finally:
            world.close()
    assert str(db) in str(info.value)
    assert "corrupt" in str(info.value)


def test_locked_database(db: Path) -> None:
    world = SqliteWorld(url(db, "?busy_timeout=0.2"))
    try:
        populate(world)
        world.create_run(NewRun("queued", "wf", b""), owner=None, lease_ttl=TTL)
        before = world.read_events("run-1")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(WorldError) as info:
                world.append("run-1", A, [NewEvent("step_completed", "2", "ship")])
            assert time.monotonic() - started >= 0.19
            message = str(info.value)
            assert str(db) in message and "locked" in message
            assert "busy_timeout" in message
            assert not isinstance(info.value, LeaseLost)
            with pytest.raises(WorldError, match="locked"):
                world.create_run(NewRun("new", "wf", b""), owner=None, lease_ttl=TTL)
            with pytest.raises(WorldError, match="locked"):
                world.claim_due(A, TTL, 10)
            # Readers are not blocked by a writer in WAL mode.
            assert world.read_events("run-1") == before
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert world.read_events("run-1") == before
        assert world.get_run("new") is None
        queued = world.get_run("queued")
        assert queued is not None and queued.status == "pending"
        world.append("run-1", A, [NewEvent("step_completed", "2", "ship")])
        assert [e.seq for e in world.read_events("run-1")] == [1, 2, 3]
        assert [r.id for r in world.claim_due(A, TTL, 10)] == ["queued"]
    finally:
        world.close()


def test_polling_an_idle_world_does_not_need_the_write_lock(db: Path) -> None:
    with SqliteWorld(url(db, "?busy_timeout=5")) as world:
        populate(world)
        world.append("run-1", A, [], RunUpdate("suspended", wake_at=world.now() + 3600))
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            assert world.claim_due(A, TTL, 10) == []
            assert world.next_due_at() is not None
            assert world.count_runs() == {"suspended": 1}
            assert time.monotonic() - started < 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


def test_waits_for_a_short_lock(db: Path) -> None:
    with SqliteWorld(url(db, "?busy_timeout=10")) as world:
        populate(world)
        blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
        timer.start()
        try:
            world.append("run-1", A, [NewEvent("after-wait")])
        finally:
            timer.join()
            blocker.close()
        assert world.read_events("run-1")[-1].kind == "after-wait"


def test_closed_world_refuses_use(db: Path) -> None:
    world = SqliteWorld(url(db))
    populate(world)
    world.close()
    world.close()
    with pytest.raises(WorldError, match="closed"):
        world.get_run("run-1")
    with pytest.raises(WorldError, match="closed"):
        world.append("run-1", A, [])


# -- fork -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_uses_its_own_connection(world: SqliteWorld) -> None:
    populate(world)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            world.append("run-1", A, [NewEvent("from-child")])
            world.create_run(NewRun("child-run", "wf", b""), owner=None, lease_ttl=TTL)
            world.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert world.read_events("run-1")[-1].kind == "from-child"
    assert world.get_run("child-run") is not None
    world.append("run-1", A, [NewEvent("from-parent")])
    assert [e.kind for e in world.read_events("run-1")][-2:] == ["from-child", "from-parent"]


def test_claimed_runs_bring_their_short_logs(world: SqliteWorld) -> None:
    now = world.now()
    long_log = _world._PRELOAD_EVENTS + 1
    for run_id, steps in (("short", 3), ("long", long_log), ("fresh", 0)):
        world.create_run(NewRun(run_id, "wf", b"input"), owner=A, lease_ttl=TTL)
        for i in range(steps):
            world.append(run_id, A, [NewEvent("step_completed", str(i + 1), "s", b"%d" % i)])
        world.append(run_id, A, [], RunUpdate("suspended", wake_at=now - 1, release=True))

    claimed = {record.id: record for record in world.claim_due("worker-b", TTL, 10)}

    short = claimed["short"]
    assert short.events is not None
    assert list(short.events) == world.read_events("short")
    assert [e.seq for e in short.events] == [1, 2, 3, 4] and short.last_seq == 4
    assert claimed["long"].events is None  # read outside the write lock, by read_events
    assert claimed["long"].last_seq == long_log + 1
    assert claimed["fresh"].events is None  # only run_created: nothing to replay


def test_a_payload_row_is_replaced_but_an_event_key_is_never_overwritten(
    world: SqliteWorld, db: Path
) -> None:
    from worlds.sqlite._sql import _WRITE_ROW

    world.create_run(NewRun("r1", "wf", b"{}"), owner="a", lease_ttl=30)
    key = _schema.event_key(1, 1)  # r1's run_created
    output = _schema.event_key(1, _schema.PAYLOAD_SEQ["output"])
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(_WRITE_ROW, (output, "output", None, None, b"1", 1.0))
        conn.execute(_WRITE_ROW, (output, "output", None, None, b"2", 2.0))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(_WRITE_ROW, (key, "step_completed", "1", "s", b"x", 3.0))
        rows = conn.execute("SELECT key, kind, data FROM events ORDER BY key").fetchall()
    finally:
        conn.close()
    assert (output, "output", b"2") in rows
    assert (key, "run_created", None) in rows and len([r for r in rows if r[0] == key]) == 1


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_worker_whose_database_file_is_deleted_or_replaced_is_stopped(db: Path, how: str):
    # Its connections would go on with the unlinked file, where no other process sees its work.
    world = SqliteWorld(f"sqlite:///{db}")
    try:
        assert world.claim_due("w", 30.0, 10) == []
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            SqliteWorld(f"sqlite:///{db}").close()  # what the next process to start creates
        world._next_file_check = 0.0
        with pytest.raises(WorldError, match=f"was {how}") as raised:
            world.claim_due("w", 30.0, 10)
        assert not raised.value.transient
        assert str(db) in str(raised.value)
    finally:
        world.close()


def test_a_database_file_left_in_place_is_not_taken_for_another(db: Path):
    world = SqliteWorld(f"sqlite:///{db}")
    try:
        for _ in range(3):
            world._next_file_check = 0.0
            assert world.claim_due("w", 30.0, 10) == []
    finally:
        world.close()
