"""`durable dev`: a worker with a live log of runs, stopped cleanly by a signal."""

from __future__ import annotations

import io
import json
import signal
import uuid
from collections import Counter
from collections.abc import Callable

import pytest
from rich.console import Console

from cli._dev import RunWatcher, active_runs
from durable._children import CHILD_TOKEN_PREFIX
from durable._errors import WorldError
from durable.world import HookRecord, NewEvent, NewRun, RunUpdate
from tests.cli.background import Running
from worlds.memory import MemoryWorld


def test_dev_runs_workflows_and_shows_what_happens(cli):
    with Running(cli, "dev", "tests.cli.cli_workload", merged=True) as dev:
        dev.wait_for("waiting for runs")
        flaky = cli.start("flaky", '["x"]')
        doomed = cli.start("doomed", '["nope"]')
        dev.wait_for(f"{flaky}  ■ completed")
        dev.wait_for(f"{doomed}  ■ failed")
        dev.interrupt()
        code, _, text = dev.finish(timeout=15)
    assert code == 0
    for expected in (
        f"{flaky}  ○ created flaky",
        f"{flaky}  ▶ started flaky",
        f"{flaky}  ↻ step wobbly",
        "attempt 1 failed: ConnectionError: x: try again",
        f"{flaky}  ✓ step wobbly",
        f"{flaky}  ☾ sleep",
        f"{doomed}  ✗ step refuse failed",
        "stopped",
    ):
        assert expected in text
    assert "Traceback" not in text
    assert cli.json("runs", "--status", "completed")["runs"][0]["id"] == flaky


def test_dev_shows_suspension_and_stops_on_sigterm(cli):
    with Running(cli, "dev", "tests.cli.cli_workload", merged=True) as dev:
        dev.wait_for("waiting for runs")
        napper = cli.start("nap", '["1h"]')
        dev.wait_for(f"{napper}  ☾ suspended")
        dev.proc.send_signal(signal.SIGTERM)
        code, _, _ = dev.finish(timeout=15)
    assert code == 0
    assert cli.json("inspect", napper)["run"]["status"] == "suspended"


# The watcher behind `durable dev`, driven step by step on an in-memory world with its own clock.

OWNER = "dev-test:1:owner"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 0.001) -> None:
        self.now += seconds


class SpyWorld(MemoryWorld):
    """Counts the calls a watcher makes and the runs they return; can run something just before
    one read of a log; with ``cost``, makes each run returned take a millisecond of that clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__("memory://", clock=clock)
        self.calls: Counter[str] = Counter()
        self.returned: Counter[str | None] = Counter()
        """Runs returned, by the status listed (``None``: any status, or read one by one)."""
        self.cost: Clock | None = None
        self.before_read: Callable[[], None] | None = None
        self.unreadable: set[str] = set()

    def _returned(self, status: str | None, count: int) -> None:
        self.returned[status] += count
        if self.cost is not None:
            self.cost.tick(count / 1000)

    def list_runs(self, **kwargs):
        self.calls["list_runs"] += 1
        runs = super().list_runs(**kwargs)
        self._returned(kwargs.get("status"), len(runs))
        return runs

    def count_runs(self):
        self.calls["count_runs"] += 1
        return super().count_runs()

    def get_run(self, run_id):
        self.calls["get_run"] += 1
        run = super().get_run(run_id)
        self._returned(None, run is not None)
        return run

    def read_events(self, run_id, after_seq=0):
        self.calls["read_events"] += 1
        before, self.before_read = self.before_read, None
        if before is not None:
            before()
        if run_id in self.unreadable:
            raise WorldError("database is locked", transient=True)
        return super().read_events(run_id, after_seq)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(clock: Clock) -> SpyWorld:
    return SpyWorld(clock)


def _create(world: SpyWorld, name: str = "greet", parent: str | None = None) -> str:
    world._clock.tick()
    run_id = f"wrun_{uuid.uuid4().hex}"
    world.create_run(NewRun(run_id, name, b"[]", parent_id=parent), owner=None, lease_ttl=30)
    return run_id


def _step(world: SpyWorld, run_id: str, name: str = "work", op: str = "1") -> None:
    world._clock.tick()
    world.append(run_id, OWNER, [NewEvent("step_completed", op, name, b'"ok"')])


def _finish(world: SpyWorld, run_id: str, status: str = "completed") -> None:
    """Run a pending run to its end: one step, then completed or failed."""
    world._clock.tick()
    assert world.acquire(run_id, OWNER, 30) is not None
    _step(world, run_id)
    world._clock.tick()
    error = b'{"type": "ValueError", "message": "boom"}' if status == "failed" else None
    end = NewEvent(f"run_{status}", None, None, error)
    world.append(run_id, OWNER, [end], RunUpdate(status, release=True))  # type: ignore[arg-type]


def _suspend(world: SpyWorld, run_id: str, wake_at: float | None) -> None:
    world._clock.tick()
    world.append(run_id, OWNER, [], RunUpdate("suspended", wake_at=wake_at, release=True))


def _texts(lines) -> list[str]:
    return [line.plain for line in lines]


def _lines_of(texts: list[str], run_id: str) -> list[str]:
    return [t.split(f"{run_id}  ", 1)[1] for t in texts if f"{run_id}  " in t]


def test_watcher_shows_every_run_of_a_burst_and_every_failure(world):
    watcher = RunWatcher(world)
    watcher.prime()
    failing = [_create(world, "boom") for _ in range(5)]
    quick = [_create(world, "quick") for _ in range(400)]
    for run_id in failing:
        _finish(world, run_id, "failed")
    for run_id in quick:
        _finish(world, run_id)
    texts = _texts(watcher.poll())
    for run_id in failing:
        assert _lines_of(texts, run_id)[-1].startswith("■ failed"), run_id
    for run_id in quick:
        lines = _lines_of(texts, run_id)
        assert lines[0] == "○ created quick", run_id
        assert lines[-1].startswith("■ completed"), run_id
    assert not any("not shown" in t for t in texts)
    # Nothing changed: the next poll reads a page of runs per list and no run's log.
    world.calls.clear()
    assert watcher.poll() == []
    assert world.calls["read_events"] == 0 and world.calls["get_run"] == 0
    assert world.calls["count_runs"] == 0 and world.calls["list_runs"] <= 5


def test_watcher_summarises_a_burst_too_big_to_show_but_shows_its_failures(world):
    watcher = RunWatcher(world, page=4, max_page=16)
    watcher.prime()
    failing = [_create(world, "boom") for _ in range(3)]
    quick = [_create(world, "quick") for _ in range(40)]
    for run_id in [*failing, *quick]:
        _finish(world, run_id, "failed" if run_id in failing else "completed")
    texts = _texts(watcher.poll())
    for run_id in failing:
        assert _lines_of(texts, run_id)[-1].startswith("■ failed"), run_id
    for run_id in quick[-16:]:
        assert _lines_of(texts, run_id)[0] == "○ created quick"
    assert not any(_lines_of(texts, run_id) for run_id in quick[:-16])
    (summary,) = [t for t in texts if "not shown" in t]
    assert "24 runs not shown individually" in summary
    assert "40 completed" in summary and "3 failed" in summary
    world.calls.clear()
    assert watcher.poll() == []
    assert world.calls["count_runs"] == 0 and world.calls["read_events"] == 0


def test_watcher_shows_a_failure_of_a_run_it_did_not_see_start(world):
    watcher = RunWatcher(world, page=4, max_page=8)
    watcher.prime()
    hidden = [_create(world, "boom") for _ in range(5)]
    for _ in range(20):
        _create(world, "quick")
    watcher.poll()  # too many: the oldest five are summarised, still pending
    world._clock.tick(5)
    _finish(world, hidden[0], "failed")
    texts = _texts(watcher.poll())
    assert _lines_of(texts, hidden[0])[-1].startswith("■ failed")


def test_watcher_never_shows_an_event_twice(world):
    watcher = RunWatcher(world)
    watcher.prime()
    run_id = _create(world, "order")
    world.acquire(run_id, OWNER, 30)
    _step(world, run_id, "charge", "1")
    # The run moves on between the read of its record and the read of its log.
    world.before_read = lambda: (
        _step(world, run_id, "ship", "2"),
        world.append(run_id, OWNER, [NewEvent("run_completed")], RunUpdate("completed")),
    )
    first = _lines_of(_texts(watcher.poll()), run_id)
    again = _lines_of(_texts(watcher.poll()), run_id)
    shown = [line.split(" (")[0] for line in first + again]
    assert shown.count("✓ step ship") == 1 and shown.count("■ completed") == 1, shown
    assert again == []
    assert [line.split(" (")[0] for line in first] == [
        "○ created order",
        "▶ started order",
        "✓ step charge",
        "✓ step ship",
        "■ completed",
    ]
    # Later pushed out of the newest runs by hundreds of others, and listed again: still quiet.
    for _ in range(300):
        _finish(world, _create(world, "quick"))
    assert _lines_of(_texts(watcher.poll()), run_id) == []


def test_watcher_shows_later_what_it_could_not_read(world):
    watcher = RunWatcher(world)
    watcher.prime()
    stuck, fine = _create(world, "greet"), _create(world, "greet")
    _finish(world, stuck, "failed")
    world.unreadable.add(stuck)
    texts = _texts(watcher.poll())
    assert _lines_of(texts, stuck) == [] and _lines_of(texts, fine) == ["○ created greet"]
    world.unreadable.clear()
    for _ in range(300):  # the run is no longer among the newest
        _create(world, "quick")
    lines = _lines_of(_texts(watcher.poll()), stuck)
    assert lines[0] == "○ created greet" and lines[-1].startswith("■ failed"), lines


def test_watcher_says_created_until_a_run_starts(world):
    watcher = RunWatcher(world)
    watcher.prime()
    run_id = _create(world, "greet")
    assert _lines_of(_texts(watcher.poll()), run_id) == ["○ created greet"]
    assert watcher.poll() == []  # still waiting for a worker: nothing more to say
    world.acquire(run_id, OWNER, 30)
    assert _lines_of(_texts(watcher.poll()), run_id) == ["▶ started greet"]
    _step(world, run_id, "make_greeting")
    lines = _lines_of(_texts(watcher.poll()), run_id)
    assert [line.split(" (")[0] for line in lines] == ["✓ step make_greeting"]


def test_watcher_shows_a_parent_waiting_for_its_child(world, clock):
    watcher = RunWatcher(world)
    watcher.prime()
    parent = _create(world, "parent")
    world.acquire(parent, OWNER, 30)
    child = _create(world, "child", parent=parent)
    info = json.dumps({"run_id": child, "workflow": "child"}).encode()
    world.create_hook(
        OWNER,
        HookRecord(f"{CHILD_TOKEN_PREFIX}{child}", parent, "1", clock()),
        NewEvent("child_started", "1", "child", info),
    )
    _suspend(world, parent, wake_at=clock() + 60)  # the internal re-check
    texts = _lines_of(_texts(watcher.poll()), parent)
    waiting = [t for t in texts if t.startswith("☾ suspended")]
    assert waiting and f"waiting for child run {child}" in waiting[0], texts
    assert "until" not in waiting[0]
    assert any(t.startswith(f"↳ created child run {child}") for t in texts), texts
    table = _render(watcher, 160)
    assert f"suspended, waiting for child run {child}" in table
    assert "suspended, waiting for child run" in _render(watcher, 100)
    _finish(world, child)
    world.resume_hook(f"{CHILD_TOKEN_PREFIX}{child}", b'{"status": "completed"}')
    texts = _lines_of(_texts(watcher.poll()), parent)
    assert f"↲ child {child} completed" in texts, texts
    assert not any("hook_received" in t or CHILD_TOKEN_PREFIX in t for t in texts)


def _render(watcher: RunWatcher, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(active_runs(watcher, watcher.world.now()))
    return console.export_text()


def test_active_runs_say_how_many_are_left_out(world, clock):
    watcher = RunWatcher(world)
    runs = [_create(world, "signup") for _ in range(300)]
    for run_id in runs:
        world.acquire(run_id, OWNER, 30)
        world.append(
            run_id, OWNER, [], RunUpdate("suspended", wake_at=clock() + 3600, release=True)
        )
    watcher.prime()
    text = _render(watcher, 120)
    assert "…and 285 more" in text
    assert sum(run_id in text for run_id in runs) == 15


@pytest.mark.parametrize("width", [60, 80])
def test_active_runs_keep_run_ids_and_statuses_readable_when_narrow(world, clock, width):
    watcher = RunWatcher(world)
    sleeper = _create(world, "a_workflow_with_a_long_name")
    world.acquire(sleeper, OWNER, 30)
    _suspend(world, sleeper, wake_at=clock() + 3600)
    worker = _create(world, "a_workflow_with_a_long_name")
    world.acquire(worker, OWNER, 30)
    watcher.prime()
    text = _render(watcher, width)
    assert all(len(line) <= width for line in text.splitlines())
    rows = {line.split()[0]: line.rstrip() for line in text.splitlines() if line.strip()}
    assert rows[sleeper].endswith("  suspended"), text
    assert rows[worker].endswith("  running"), text
    wide = _render(watcher, 160)
    assert "a_workflow_with_a_long_name" in wide and "wakes in 1 h" in wide, wide


# Many runs asleep: each poll reads only what may have changed; every unfinished run is listed on
# a time budget (the world's ``cost`` clock stands for the time its reads take).


def _sleepers(world: SpyWorld, count: int, wake_at: float | None) -> list[str]:
    runs = []
    for _ in range(count):
        world._clock.tick()
        run_id = f"wrun_{uuid.uuid4().hex}"
        world.create_run(NewRun(run_id, "nap", b"[]"), owner=OWNER, lease_ttl=30)
        world.append(run_id, OWNER, [], RunUpdate("suspended", wake_at=wake_at, release=True))
        runs.append(run_id)
    return runs


def _headlines(lines, run_id: str) -> list[str]:
    """What a run did, without durations and details."""
    return [t.split(" (")[0].split("  ")[0] for t in _lines_of(_texts(lines), run_id)]


def _budgeted(world: SpyWorld) -> tuple[RunWatcher, Clock]:
    cost = Clock()
    world.cost = cost
    watcher = RunWatcher(world, timer=cost)
    watcher.prime()
    world.returned.clear()
    world.calls.clear()
    return watcher, cost


def test_watcher_idle_polls_read_few_runs_however_many_sleep(world, clock):
    _sleepers(world, 2_000, wake_at=clock() + 3600)
    watcher, cost = _budgeted(world)
    for _ in range(10):
        cost.tick(0.5)  # `durable dev --refresh 0.5`
        assert watcher.poll() == []
    assert world.returned["suspended"] == 0  # not listed again yet: that took 2 s
    assert sum(world.returned.values()) <= 10 * 250  # the newest page, no more
    # Listed again, now and then: at most a twentieth of the time goes to it.
    start = cost()
    for _ in range(300):
        cost.tick(0.5)
        assert watcher.poll() == []
    relists = world.returned["suspended"] / 2_000
    assert relists >= 2
    assert relists * 2.0 <= 0.05 * (cost() - start)


def test_watcher_lists_every_unfinished_run_at_each_poll_while_that_is_cheap(world, clock):
    _sleepers(world, 20, wake_at=clock() + 3600)
    watcher, cost = _budgeted(world)
    for _ in range(5):
        cost.tick(0.5)
        watcher.poll()
    assert world.returned["suspended"] == 5 * 20


def test_watcher_shows_a_run_woken_between_polls_when_it_lists_every_run(world, clock):
    sleeper = _create(world, "signup")
    world.acquire(sleeper, OWNER, 30)
    hook = HookRecord("signed:7", sleeper, "1", clock())
    world.create_hook(OWNER, hook, NewEvent("hook_created", "1", "hook"))
    _suspend(world, sleeper, wake_at=None)
    _sleepers(world, 2_000, wake_at=clock() + 3600)  # the sleeper is not among the newest
    watcher, cost = _budgeted(world)
    cost.tick(0.5)
    assert watcher.poll() == []
    # Woken by the hook, run and finished in between two polls: in none of the lists read.
    world.resume_hook("signed:7", b'"yes"')
    _finish(world, sleeper)
    cost.tick(0.5)
    assert _lines_of(_texts(watcher.poll()), sleeper) == []
    cost.tick(60)
    lines = _headlines(watcher.poll(), sleeper)
    assert lines == ["• hook_received signed:7", "▶ resumed", "✓ step work", "■ completed"], lines
    cost.tick(60)
    assert _lines_of(_texts(watcher.poll()), sleeper) == []


def test_watcher_reads_a_run_whose_timer_fell_due_at_the_next_poll(world, clock):
    sleeper = _sleepers(world, 1, wake_at=clock() + 5)[0]
    _sleepers(world, 2_000, wake_at=clock() + 3600)
    watcher, cost = _budgeted(world)
    clock.tick(6)
    _finish(world, sleeper)  # woke, ran and finished in between two polls
    cost.tick(0.5)
    lines = _headlines(watcher.poll(), sleeper)
    assert lines == ["▶ resumed", "✓ step work", "■ completed"], lines
    assert world.returned["suspended"] == 0


def test_active_runs_count_every_unfinished_run_not_only_those_followed(world, clock):
    _sleepers(world, 10_050, wake_at=clock() + 3600)
    watcher = RunWatcher(world)
    watcher.prime()
    text = _render(watcher, 120)
    assert "active runs (10,050)" in text and "…and 10,035 more" in text, text
    for _ in range(3):
        _create(world, "greet")
    watcher.poll()
    assert "active runs (10,053)" in _render(watcher, 120)


def test_watcher_reads_the_parent_of_a_run_that_changed(world, clock):
    parent = _create(world, "parent")
    world.acquire(parent, OWNER, 30)
    _sleepers(world, 2_000, wake_at=clock() + 3600)  # the parent is not among the newest
    child = _create(world, "child", parent=parent)
    token = f"{CHILD_TOKEN_PREFIX}{child}"
    info = json.dumps({"run_id": child, "workflow": "child"}).encode()
    world.create_hook(
        OWNER,
        HookRecord(token, parent, "1", clock()),
        NewEvent("child_started", "1", "child", info),
    )
    _suspend(world, parent, wake_at=clock() + 60)
    watcher, cost = _budgeted(world)
    # The child ends, and its parent takes that in and finishes, in between two polls.
    _finish(world, child)
    world.resume_hook(token, b'{"status": "completed"}')
    _finish(world, parent)
    cost.tick(0.5)
    lines = _headlines(watcher.poll(), parent)
    assert lines == [f"↲ child {child} completed", "▶ resumed", "✓ step work", "■ completed"]
    assert world.returned["suspended"] == 0
