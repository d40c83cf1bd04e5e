"""What ``durable dev`` shows: the changes in a world, found by polling it, as lines of a log.

Each :meth:`RunWatcher.poll` looks at

* the newest runs, in a page that doubles (up to ``max_page``) until it reaches runs seen before,
  so that every run created since the last poll is shown from its creation; a burst larger than
  that is summarised in one line, with the world's counts by status;
* the pending and running runs, and, one by one, the runs it follows that left those lists (that
  finished, say), whose timer just fell due, or whose child changed;
* the newest failed runs, in pages the same way, so that no failure goes unshown, not even of a
  run created within a summarised burst;
* every unfinished run, by status, when a time budget allows: a world may hold tens of thousands of
  suspended runs, too many to list twice a second, so after a listing that took ``t`` seconds the
  next waits ``RELIST_WAIT * t`` (at every poll while that is short). A run that woke, ran and
  suspended or finished between two polls, unseen by the lists above, is shown at that listing,
  later but whole: its events are read from the newest ``seq`` shown.

No event is shown twice: each followed run remembers the newest ``seq`` shown (the log, not the
run's record, which may be older than the log read after it, says how far that is), and a run that
finished and was shown is remembered by id while the lists above may still return it.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from cli._render import describe_event
from cli._timeline import build_timeline
from cli._values import format_ago, format_duration, format_when
from cli._waits import event_data, open_waits
from durable._children import CHILD_TOKEN_PREFIX
from durable._errors import DurableError
from durable.world import FINISHED_STATUSES, RUN_STATUSES, Event, RunRecord, World

__all__ = ["RunWatcher", "Waiting", "waiting_for"]

log = logging.getLogger("durable")

PAGE = 200
"""How many of the newest runs each poll lists first."""
MAX_PAGE = 3200
"""The most runs one listing looks at: more new runs at once are summarised, not shown."""
FAILED_PAGE = 50
"""How many of the newest failed runs each poll lists first."""
FOLLOW_MAX = 10_000
"""The most unfinished runs of one status followed (listed when the time budget allows)."""
RELIST_WAIT = 20.0
"""After listing every unfinished run took ``t`` seconds, the next listing waits at least this
times ``t``: it then takes at most ~5% of the time, however many runs sleep."""
DUE_GRACE = 30.0
"""Seconds after a followed run's timer fell due during which it is read at every poll; after that
(no worker takes it up, say) the listing of every unfinished run looks after it."""
MARGIN = 2.0
"""Seconds: a run created up to this long before the newest one seen may still be new (processes
stamp creation times with clocks of their own, so their order is not quite that of creation)."""
REMEMBER = 60.0
"""Seconds a finished run is remembered at least (a world's lists by status may lag)."""

_UNFINISHED = ("pending", "running", "suspended")
_RUN_ENDS = frozenset({"run_completed", "run_failed", "run_cancelled"})

_ICONS = {
    "run_created": ("○", "cyan"),
    "step_completed": ("✓", "green"),
    "step_retrying": ("↻", "yellow"),
    "step_failed": ("✗", "bold red"),
    "sleep_started": ("☾", "magenta"),
    "child_started": ("↳", "cyan"),
    "run_completed": ("■", "bold green"),
    "run_failed": ("■", "bold red"),
    "run_cancelled": ("■", "yellow"),
}
_CHILD_ENDS = {"completed": "green", "failed": "bold red", "cancelled": "yellow"}

Line = tuple[float, float, Text]
"""A line of the log with what orders it: the time it speaks of, then a position in the run."""


@dataclass(frozen=True)
class Waiting:
    """What a suspended run waits for."""

    children: tuple[str, ...] = ()
    """Child runs it waits on."""
    hooks: tuple[tuple[str, float | None], ...] = ()
    """Hooks it waits on: token and when the wait times out."""
    until: float | None = None
    """When a timer of its own (a sleep, a retry) wakes it."""

    def describe(self, now: float | None = None) -> str:
        """One phrase; times relative to ``now`` when given, else as times of day."""
        parts: list[str] = []
        if self.children:
            first = self.children[0]
            more = len(self.children) - 1
            parts.append(
                f"waiting for child run {first}"
                + (f" and {more} other child run{'s' if more > 1 else ''}" if more else "")
            )
        for token, timeout_at in self.hooks[:1]:
            hook = f"waiting for hook {token}"
            if timeout_at is not None:
                hook += f" (times out {_when(timeout_at, now)})"
            parts.append(hook)
        if len(self.hooks) > 1:
            parts.append(f"and {len(self.hooks) - 1} more hooks")
        if self.until is not None:
            wakes = "until" if now is None else "wakes"
            parts.append(f"{wakes} {_when(self.until, now)}")
        return "; ".join(parts) or "until an outside event"


def _when(timestamp: float, now: float | None = None) -> str:
    return format_when(timestamp) if now is None else format_ago(timestamp, now)


def waiting_for(record: RunRecord, history: Sequence[Event]) -> Waiting:
    """What a suspended run waits for, from its log (see :func:`open_waits`).

    Its ``wake_at`` alone misleads: a parent waiting on a child re-checks the child every minute,
    and a wait on a hook wakes when the hook times out; only a sleep or a retry is a time the run
    waits for.
    """
    waits = open_waits(record, history)
    children = tuple(w.name for w in waits if w.kind == "child")
    # A hook that had its payload is waited on still only if it is the latest wait (a stream).
    hooks = tuple(
        (w.name, w.until)
        for i, w in enumerate(waits)
        if w.kind == "hook" and (i == 0 or not w.received)
    )
    wake = record.wake_at
    own_timer = wake is not None and (
        any(w.kind == "timer" for w in waits) or not (children or hooks)
    )
    return Waiting(children, hooks, wake if own_timer else None)


@dataclass
class _Run:
    """A run being followed."""

    record: RunRecord
    """As last read."""
    shown: int
    """The newest ``seq`` shown (or, for a run followed from the middle, there when it began)."""
    started: bool
    """Whether it has been executed (or shown starting)."""
    history: list[Event] | None = None
    """Its log up to ``shown``, once read."""
    asleep: bool = False
    """The last line shown of it says it suspended."""
    nudged: bool = False
    """Something from outside (a hook payload, a child's end) arrived since."""
    alarm: float | None = None
    """When a timer of its own wakes it, while suspended."""
    waiting: Waiting | None = None
    """What it waits for, while suspended (worked out when first asked)."""


class RunWatcher:
    """Turns changes in a world into lines of a live log, by polling it (see the module doc)."""

    def __init__(
        self,
        world: World,
        *,
        page: int = PAGE,
        max_page: int = MAX_PAGE,
        failed_page: int = FAILED_PAGE,
        follow_max: int = FOLLOW_MAX,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timer`` measures what listing every unfinished run costs (seconds, any origin)."""
        self.world = world
        self._page = page
        self._max_page = max(max_page, page)
        self._failed_page = failed_page
        self._follow_max = follow_max
        self._timer = timer
        self._runs: dict[str, _Run] = {}
        self._done: dict[str, tuple[float, float]] = {}
        """Finished runs shown: id to creation time and when they were shown finished."""
        self._horizon = float("-inf")
        """Runs created before it are not new (they were there, or were summarised)."""
        self._total = 0
        """Runs the world held when last counted, plus the new ones seen since."""
        self._failed = 0
        """Failed runs the world held when last counted, plus the failures shown since."""
        self._retry: dict[str, bool] = {}
        """Runs whose changes could not be read, and whether they are new."""
        self._relist_at = float("-inf")
        """When (by ``timer``) every unfinished run may be listed again."""
        self._burst = False
        """A burst was summarised since that listing: it lists as many runs as the world counts."""
        self._unfinished_count = 0
        """Unfinished runs the world held when last counted."""
        self._counted = False
        """Whether they were counted since the last poll began."""

    def prime(self) -> dict[str, int]:
        """Remember the runs that already exist, so only what happens from now on is shown.

        Returns:
            The number of runs by status.
        """
        counts = self.world.count_runs()
        self._note_counts(counts)
        self._total = sum(counts.values())
        self._failed = counts.get("failed", 0)
        newest = self.world.list_runs(limit=self._page)
        now = self.world.now()
        for record in newest:
            if record.status in FINISHED_STATUSES:
                self._done[record.id] = (record.created_at, now)
            else:
                self._follow(record)
        started = self._timer()
        for record in self._relist(counts):
            if record.id not in self._runs:
                self._follow(record)
        self._schedule_relist(started)
        self._advance(newest, full=len(newest) >= self._page)
        return counts

    def active(self, limit: int | None = None) -> list[RunRecord]:
        """The unfinished runs being followed (the newest ``limit`` of them), oldest first."""
        runs = [r.record for r in self._runs.values() if r.record.status not in FINISHED_STATUSES]
        if limit is None:
            return sorted(runs, key=_age)
        return heapq.nlargest(limit, runs, key=_age)[::-1]

    def unfinished_count(self) -> int:
        """How many unfinished runs the world holds, followed or not (counted once a poll)."""
        if not self._counted:
            try:
                self._note_counts(self.world.count_runs())
            except DurableError as exc:  # the last count stands until the next poll
                log.warning("dev: %s", exc)
        return self._unfinished_count

    def waiting(self, run_id: str) -> Waiting | None:
        """What a followed suspended run waits for (its log is read once, if need be)."""
        run = self._runs.get(run_id)
        if run is None or run.record.status != "suspended":
            return None
        if run.waiting is None:
            try:
                run.waiting = waiting_for(run.record, self._history(run))
            except DurableError:  # shown as merely suspended, until the log can be read
                return None
        return run.waiting

    def poll(self) -> list[Text]:
        """Look for changes; returns one line per thing that happened, oldest first."""
        horizon = self._horizon
        self._counted = False
        found: dict[str, RunRecord] = {}
        newest, capped = self._scan(None, self._page)
        _merge(found, newest)
        counts = self.world.count_runs() if capped else None
        if counts is not None:
            self._note_counts(counts)
        self._burst = self._burst or capped
        started = self._timer()
        relisting = started >= self._relist_at
        cut: dict[str, float] = {}
        if relisting:
            _merge(found, self._relist(counts))
        else:
            burst = 0
            if counts is not None:  # how many runs came at once, at least
                burst = max(sum(counts.values()) - self._total, self._max_page)
            cut = self._list_active(found, burst)
        failed, failed_capped = self._scan("failed", self._failed_page)
        _merge(found, failed)
        if relisting:  # every followed run not listed is finished (or gone)
            missing = [i for i in (*self._runs, *self._retry) if i not in found]
        else:
            missing = self._worth_reading(found, cut)
        self._read(found, missing)
        changed = [r for r in found.values() if not self._unchanged(r)]
        # A parent hears of its child's end by a hook, and may take it in between two polls.
        parents = {r.parent_id for r in changed if r.parent_id is not None}
        parents = {p for p in parents if p in self._runs and p not in found}
        self._read(found, parents)
        changed.extend(found[p] for p in parents if p in found and not self._unchanged(found[p]))
        if relisting:  # charged with the reads up to here; the lines that follow are news
            self._schedule_relist(started)
        # New: created since the last poll, and listed in full (not within a summarised burst);
        # or created after the newest run listed (found in a list read later).
        listed = {r.id for r in (*newest, *failed)}
        top = newest[0].created_at if newest else float("-inf")
        retry, self._retry = self._retry, {}
        lines: list[Line] = []
        for record in sorted(changed, key=_age):
            fresh = retry.get(record.id) or (
                record.created_at >= horizon and (record.id in listed or record.created_at > top)
            )
            try:
                lines.extend(self._changes(record, fresh))
            except DurableError as exc:  # its log could not be read: try again next time
                log.warning("dev: %s", exc)
                self._retry[record.id] = fresh
        lines.sort(key=lambda line: (line[0], line[1]))
        texts = [text for _, _, text in lines]
        if capped or failed_capped:
            texts.extend(self._summary(counts or self.world.count_runs(), capped, failed_capped))
        self._advance(newest, full=capped)
        self._forget()
        return texts

    # -- finding runs ------------------------------------------------------------------------

    def _scan(self, status: str | None, first: int) -> tuple[list[RunRecord], bool]:
        """The newest runs (of a status), back to runs seen before; and whether it stopped short."""
        limit = first
        while True:
            page = self.world.list_runs(status=status, limit=limit)
            if len(page) < limit or self._seen_before(page[-1]):
                return page, False
            if limit >= self._max_page:
                return page, True
            limit = min(limit * 2, self._max_page)

    def _seen_before(self, record: RunRecord) -> bool:
        return (
            record.created_at <= self._horizon or record.id in self._runs or record.id in self._done
        )

    def _relist(self, counts: dict[str, int] | None) -> list[RunRecord]:
        """Every unfinished run (see :meth:`_unfinished`)."""
        if self._burst and counts is None:
            counts = self.world.count_runs()
            self._note_counts(counts)
        self._burst = False
        return self._unfinished(counts)

    def _schedule_relist(self, started: float) -> None:
        """Put off the next listing of every unfinished run by ``RELIST_WAIT`` times this one's."""
        ended = self._timer()
        self._relist_at = ended + (ended - started) * RELIST_WAIT

    def _list_active(self, found: dict[str, RunRecord], burst: int) -> dict[str, float]:
        """List the pending and running runs into ``found``.

        After a burst of ``burst`` runs, too many to show, the newest of every unfinished status
        as well: the burst's runs are followed from now on, so that a failure is shown even of
        a run that was not (the list of failed runs finds it, but only a run followed, or new,
        is shown).

        Returns:
            For a list cut short, when its oldest run was created: of the runs there before,
            only those listed or created after it are known to have kept that status.
        """
        cut: dict[str, float] = {}
        for status in _UNFINISHED:
            limit = min(burst + self._page, self._follow_max) if burst else 0
            if status != "suspended":
                limit = max(limit, self._max_page)
            if not limit:
                continue
            records = self.world.list_runs(status=status, limit=limit)
            _merge(found, records)
            if len(records) >= limit:
                cut[status] = records[-1].created_at
        return cut

    def _worth_reading(self, found: dict[str, RunRecord], cut: dict[str, float]) -> list[str]:
        """Followed runs not listed, that changed or may have: read them one by one.

        Those that left the pending or running list, and those whose timer just fell due (one
        that woke, ran and suspended again in between two polls is in no list). Suspended runs
        woken otherwise (a hook's payload, a cancellation) are found in those lists or, should
        they be quicker than a poll, by the next listing of every unfinished run.
        """
        now = self.world.now()
        reads = [run_id for run_id in self._retry if run_id not in found]
        due: list[tuple[float, str]] = []
        for run_id, run in self._runs.items():
            if run_id in found:
                continue
            record = run.record
            if record.status == "suspended":
                wake = record.wake_at
                if wake is not None and now - DUE_GRACE <= wake <= now:
                    due.append((wake, run_id))
            elif record.status in cut:
                if record.created_at > cut[record.status]:
                    reads.append(run_id)
            elif record.status in ("pending", "running"):
                reads.append(run_id)
        # Many falling due at once: the first are read now, the rest at the next listing.
        reads.extend(run_id for _, run_id in heapq.nsmallest(self._page, due))
        return list(dict.fromkeys(reads))  # a run to read again may be among them

    def _read(self, found: dict[str, RunRecord], run_ids: Iterable[str]) -> None:
        """Read runs one by one into ``found``; stop following those deleted."""
        for run_id in run_ids:
            record = self.world.get_run(run_id)
            if record is not None:
                found[run_id] = record
            elif run_id in self._runs:  # deleted
                del self._runs[run_id]

    def _unchanged(self, record: RunRecord) -> bool:
        """Whether a run listed has nothing to show, and nothing to be done about it."""
        run = self._runs.get(record.id)
        if run is None:
            return record.id in self._done
        previous = run.record
        # An older copy (a lagging index), or the same.
        return record.last_seq < previous.last_seq or (
            record.last_seq == previous.last_seq and record.status == previous.status
        )

    def _note_counts(self, counts: dict[str, int]) -> None:
        self._unfinished_count = sum(counts.get(status, 0) for status in _UNFINISHED)
        self._counted = True

    def _unfinished(self, counts: dict[str, int] | None) -> list[RunRecord]:
        """Unfinished runs by status: every one followed, and (with ``counts``) every one there."""
        records: list[RunRecord] = []
        followed = {status: 0 for status in _UNFINISHED}
        for run in self._runs.values():
            if run.record.status in followed:
                followed[run.record.status] += 1
        for status in _UNFINISHED:
            there = (counts or {}).get(status, 0)
            limit = min(max(followed[status], there) + self._page, self._follow_max)
            records.extend(self.world.list_runs(status=status, limit=limit))
        return records

    def _follow(self, record: RunRecord) -> None:
        """Follow a run from now on, without showing what it did before."""
        started = record.status != "pending" or record.last_seq > 1
        self._runs[record.id] = _Run(
            record, record.last_seq, started, asleep=record.status == "suspended"
        )

    def _advance(self, newest: list[RunRecord], full: bool) -> None:
        if not newest:
            return
        self._horizon = max(self._horizon, newest[0].created_at - MARGIN)
        if full:  # the runs left out of a full page are not new from now on
            self._horizon = max(self._horizon, newest[-1].created_at)

    def _forget(self) -> None:
        """Forget finished runs that no list can show as new again."""
        before = self.world.now() - REMEMBER
        self._done = {
            run_id: (created, shown)
            for run_id, (created, shown) in self._done.items()
            if created >= self._horizon or shown >= before
        }

    def _summary(self, counts: dict[str, int], capped: bool, failed_capped: bool) -> list[Text]:
        lines: list[Text] = []
        by_status = ", ".join(f"{counts[s]:,} {s}" for s in RUN_STATUSES if counts.get(s))
        total = sum(counts.values())
        if capped and total > self._total:
            lines.append(
                Text(
                    f"… {total - self._total:,} runs not shown individually (too many at once; "
                    f"failures are shown all the same); runs by status now: {by_status}",
                    style="yellow",
                )
            )
        failed = counts.get("failed", 0)
        if failed_capped and failed > self._failed:
            lines.append(
                Text(
                    f"… {failed - self._failed:,} failed runs not shown individually (too many "
                    "at once): `durable runs --status failed` lists them",
                    style="bold red",
                )
            )
        self._total, self._failed = total, failed
        return lines

    # -- what changed ------------------------------------------------------------------------

    def _changes(self, record: RunRecord, fresh: bool) -> list[Line]:
        run = self._runs.get(record.id)
        if run is None:
            if record.id in self._done:
                return []
            if not fresh:  # there before (or summarised): show only what it does from now on
                if record.status not in FINISHED_STATUSES:
                    self._follow(record)
                return []
            run = _Run(record, 0, False, [])
            previous: RunRecord | None = None
        else:
            previous = run.record
            if record.last_seq < previous.last_seq:  # an older copy (a lagging index)
                return []
            if record.last_seq == previous.last_seq and record.status == previous.status:
                return []
        # Reads first: should one fail, nothing has changed and the next poll tries again.
        if record.status == "suspended":
            self._history(run)  # what it waits for is in there
        new = self._read_new(run, record.last_seq)
        if previous is None:
            self._runs[record.id] = run
            self._total += 1
        run.record = record
        run.waiting = None
        lines = self._event_lines(run, new)
        if not new or new[-1].seq <= record.last_seq:  # else the record is older than the log
            lines.extend(self._status_lines(run, new))
        if record.status in FINISHED_STATUSES:
            del self._runs[record.id]
            self._done[record.id] = (record.created_at, self.world.now())
            if record.status == "failed":
                self._failed += 1
        return lines

    def _history(self, run: _Run) -> list[Event]:
        if run.history is None:
            run.history = [e for e in self.world.read_events(run.record.id) if e.seq <= run.shown]
        return run.history

    def _read_new(self, run: _Run, last_seq: int) -> list[Event]:
        """The events after those shown (the log may have grown past the record read before)."""
        after = run.shown
        if last_seq <= after:
            return []
        if run.history is None:
            everything = self.world.read_events(run.record.id)
            run.history = [e for e in everything if e.seq <= after]
        else:
            everything = self.world.read_events(run.record.id, after)
        new = [e for e in everything if e.seq > after]
        run.history.extend(new)
        if new:
            run.shown = new[-1].seq
        return new

    def _event_lines(self, run: _Run, new: list[Event]) -> list[Line]:
        if not new:
            return []
        record = run.record
        history = run.history if run.history is not None else new
        timeline = build_timeline(record, history, self.world.now())
        durations: dict[int, float | None] = {}
        for op in timeline.operations:
            for attempt in op.attempts:
                durations[attempt.seq] = attempt.finished_at - attempt.started_at
        lines: list[Line] = []
        for event in new:
            if event.kind == "value_recorded":
                continue
            if not run.started and event.kind not in ("run_created", "run_cancelled"):
                lines.append((event.created_at, event.seq - 0.5, _started(record, event)))
                run.started = True
            if run.asleep and _by_worker(event):
                lines.append((event.created_at, event.seq - 0.5, _resumed(record, event)))
                run.asleep = False
            duration = durations.get(event.seq)
            if event.kind in _RUN_ENDS:
                duration = event.created_at - timeline.started_at
            lines.append((event.created_at, event.seq, _line(record, event, duration)))
            if event.kind == "hook_received":
                run.nudged = True
        return lines

    def _status_lines(self, run: _Run, new: list[Event]) -> list[Line]:
        """Changes of status that leave no event: a run starting, resuming, suspending."""
        record = run.record
        lines: list[Line] = []
        if record.status == "running" and not run.started:
            lines.append((record.updated_at, record.last_seq + 0.25, _started(record, None)))
            run.started = True
        if record.status == "running" and run.asleep and (run.nudged or _timer_due(run, record)):
            lines.append((record.updated_at, record.last_seq + 0.25, _resumed(record, None)))
            run.asleep = False
        if record.status != "suspended" or run.asleep:
            return lines
        run.asleep, run.nudged = True, False
        run.waiting = waiting = waiting_for(record, self._history(run))
        run.alarm = waiting.until
        at = max([record.updated_at, *(e.created_at for e in new)])
        line = _prefix(at, record)
        line.append("☾ suspended", style="magenta")
        line.append(f"  {waiting.describe()}; no thread is held", style="dim")
        lines.append((at, record.last_seq + 0.5, line))
        return lines


def _age(record: RunRecord) -> tuple[float, str]:
    return record.created_at, record.id


def _merge(found: dict[str, RunRecord], records: Iterable[RunRecord]) -> None:
    """Keep the latest copy of each run (lists read one after another may differ)."""
    for record in records:
        seen = found.get(record.id)
        if seen is None or record.last_seq >= seen.last_seq:
            found[record.id] = record


def _by_worker(event: Event) -> bool:
    """Whether a worker wrote the event while executing the run (it woke up, then)."""
    return event.kind not in ("hook_received", "run_created", "run_cancelled")


def _timer_due(run: _Run, record: RunRecord) -> bool:
    return run.alarm is not None and record.updated_at >= run.alarm - 0.01


def _started(record: RunRecord, event: Event | None) -> Text:
    at = record.updated_at if event is None else event.created_at
    line = _prefix(at, record)
    line.append(f"▶ started {record.workflow_name}", style="bold cyan")
    return line


def _resumed(record: RunRecord, event: Event | None) -> Text:
    at = record.updated_at if event is None else event.created_at
    line = _prefix(at, record)
    line.append("▶ resumed", style="cyan")
    return line


def _line(record: RunRecord, event: Event, duration: float | None) -> Text:
    line = _prefix(event.created_at, record)
    token = event.name or ""
    if event.kind == "hook_received" and token.startswith(CHILD_TOKEN_PREFIX):
        status = str(event_data(event).get("status", "finished"))
        line.append("↲ ", style=_CHILD_ENDS.get(status, ""))
        line.append(f"child {token.removeprefix(CHILD_TOKEN_PREFIX)} {status}")
        return line
    icon, style = _ICONS.get(event.kind, ("•", ""))
    line.append(f"{icon} ", style=style)
    line.append(_what(record, event), style=style if event.kind.startswith("run_") else "")
    if duration is not None and event.kind != "sleep_started":
        line.append(f" ({format_duration(duration)})", style="dim")
    detail = "" if event.kind in ("run_created", "child_started") else describe_event(event)
    if detail:
        line.append(f"  {detail}", style="red" if "fail" in event.kind else "dim")
    return line


def _what(record: RunRecord, event: Event) -> str:
    if event.kind == "run_created":
        parent = f" (child of {record.parent_id})" if record.parent_id else ""
        return f"created {record.workflow_name}{parent}"
    if event.kind == "child_started":
        info = event_data(event)
        return f"created child run {info.get('run_id', '?')} ({info.get('workflow', event.name)})"
    return {
        "step_completed": f"step {event.name}",
        "step_retrying": f"step {event.name}",
        "step_failed": f"step {event.name} failed",
        "sleep_started": "sleep",
        "run_completed": "completed",
        "run_failed": "failed",
        "run_cancelled": "cancelled",
    }.get(event.kind, f"{event.kind} {event.name or ''}".strip())


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S.%f")[:-3]


def _prefix(timestamp: float, record: RunRecord) -> Text:
    line = Text(f"{_clock(timestamp)}  ", style="dim")
    line.append(f"{record.id}  ", style="cyan")
    return line
