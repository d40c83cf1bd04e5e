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

import pytest

from durable._errors import ConfigurationError, LeaseLost, WorldError
from durable.world import NewEvent, NewRun, RunUpdate, open_world
from worlds.sqlite import SqliteWorld, _schema
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
