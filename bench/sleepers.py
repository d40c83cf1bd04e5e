"""Sleepers benchmark: 10,000 runs asleep at once in one `durable worker` process.

Run it from the repository root::

    python -m bench.sleepers                             # 1,000 runs, then 10,000 runs
    python -m bench.sleepers --runs 10000 --baseline 0   # only the 10,000-run scenario

Each run of the ``sleepers`` workflow (defined below) does one step, sleeps until a due time given
as its input, then does one more step. The due times start at a common instant ``--lead`` seconds
after the runs are recorded and are staggered evenly over ``--spread`` seconds; the lead is long
enough for every run to be suspended before the first one is due (the summary says if not).

Per scenario, the parent records the runs as ``pending`` (``execute=False``), starts one
``durable worker bench.sleepers`` child on a fresh SQLite world under ``.bench-tmp/``, and samples
``/proc/PID/status`` of the child every 50 ms. It reports:

* threads held by the worker while every run sleeps: must not grow with the number of sleeping
  runs (the worker's pool is bounded by ``--concurrency``; both sizes are shown);
* worker RSS (VmRSS) while every run sleeps, and its peak (VmHWM) over the whole scenario
  (target < 150 MB);
* wake lateness: for each run, when its second step started (``time.time()`` inside the step,
  returned in the run's result) minus its due time; p50 / p99 / max (target p99 < 1 s).

``--worker-command`` replaces the ``durable`` executable (it must exec the worker in the child
process it starts, since that is the process measured), e.g. to run a patched or profiled worker.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import durable

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / ".bench-tmp"

RSS_TARGET_MB = 150.0
P99_TARGET_S = 1.0


# -- the workload (imported by the worker child as ``bench.sleepers``) --------------------------


@durable.step(name="sleepers_before")
def before_sleep(index: int) -> float:
    return time.time()


@durable.step(name="sleepers_after")
def after_sleep(index: int) -> float:
    return time.time()


@durable.workflow(name="sleepers")
def sleeper(index: int, due: float) -> dict[str, float]:
    started = before_sleep(index)
    durable.sleep_until(due)
    woke = after_sleep(index)
    return {"due": due, "started": started, "woke": woke}


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    threads: int
    rss_kb: int
    cpu_s: float = 0.0


@dataclass
class Scenario:
    runs: int
    lead: float
    spread: float
    worker_args: list[str]
    concurrency: int
    threads_asleep: int = 0
    threads_peak: int = 0
    rss_asleep_mb: float = 0.0
    rss_peak_mb: float = 0.0
    record_s: float = 0.0
    ramp_s: float = 0.0
    asleep_margin_s: float = 0.0
    all_asleep: bool = False
    lateness: list[float] = field(default_factory=list)
    wake_window_s: float = 0.0
    completed: int = 0
    wake_cpu_s: float = 0.0


def _status(pid: int) -> tuple[int, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


def _cpu_s(pid: int) -> float:
    # utime + stime of every thread, fields 14 and 15 of /proc/PID/stat (after the comm field,
    # which may hold spaces).
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _fresh(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


_WORKER_COMMAND: list[str] = []


def _durable_command() -> list[str]:
    if _WORKER_COMMAND:
        return list(_WORKER_COMMAND)
    script = Path(sys.executable).parent / "durable"
    if script.exists():
        return [str(script)]
    found = shutil.which("durable")
    return [found] if found else [sys.executable, "-c", "from cli import main; main()"]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Worker:
    """One ``durable worker bench.sleepers`` child whose threads and RSS are sampled every 50 ms."""

    def __init__(self, url: str, log_path: Path, worker_args: list[str]) -> None:
        env = dict(os.environ, DURABLE_WORLD=url, PYTHONPATH=str(ROOT))
        env.pop("DURABLE_FORCE_REPLAY", None)
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.child = subprocess.Popen(
                [*_durable_command(), "worker", "bench.sleepers", *worker_args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.samples: list[Sample] = []
        self.hwm_kb = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            status = _status(self.child.pid)
            if status is not None:
                self.samples.append(Sample(time.time(), *status, _cpu_s(self.child.pid)))
                self.hwm_kb = max(self.hwm_kb, _hwm_kb(self.child.pid))
            self._stop.wait(0.05)

    def check(self, counts: dict[str, int]) -> None:
        if counts.get("failed") or self.child.poll() is not None:
            raise RuntimeError(f"runs failed or the worker died: {counts}; see {self.log_path}")

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()


def run_scenario(
    runs: int, lead: float, spread: float, worker_args: list[str], concurrency: int
) -> Scenario:
    """Record ``runs`` pending sleepers, run one worker over them and measure it."""
    sc = Scenario(runs, lead, spread, worker_args, concurrency)
    url = _fresh(TMP / f"sleepers-{runs}.db")
    runtime = durable.configure(url, worker=False)
    world = runtime.world
    try:
        # 1. Record every run pending; due times start `lead` seconds from now.
        t0 = time.time()
        base = t0 + lead
        start = sleeper.with_options(execute=False).start
        for i in range(runs):
            start(i, base + spread * i / max(1, runs - 1))
        sc.record_s = time.time() - t0
        print(f"  recorded {runs} pending runs in {sc.record_s:.1f}s", flush=True)

        # 2. One worker process takes them all.
        worker = _Worker(url, TMP / f"sleepers-{runs}.worker.log", worker_args)
        try:
            _wait_for_line(worker.log_path, "INFO worker ", worker.child, 30)
            started = time.time()
            _wait_all_asleep(sc, world, worker, started, base)
            # 3. While they all sleep: threads and RSS (give the worker a moment to settle).
            time.sleep(min(1.0, max(0.0, base - time.time() - 0.2)))
            asleep_at = started + sc.ramp_s
            window = [x for x in list(worker.samples) if asleep_at <= x.at < base]
            window = window or worker.samples[-1:]
            sc.threads_asleep = max(x.threads for x in window)
            sc.rss_asleep_mb = max(x.rss_kb for x in window) / 1024
            # 4. Every run wakes and completes.
            deadline = base + spread + 300
            while (counts := world.count_runs()).get("completed", 0) < runs:
                worker.check(counts)
                if time.time() > deadline:
                    raise RuntimeError(f"runs did not all complete: {counts}")
                time.sleep(0.1)
            # The worker's CPU from the first due time until every run completed: what the
            # wake-ups cost, whatever share of the machine the worker was given meanwhile.
            before = [x.cpu_s for x in worker.samples if x.at <= base]
            sc.wake_cpu_s = _cpu_s(worker.child.pid) - (before[-1] if before else 0.0)
        finally:
            worker.stop()
        sc.threads_peak = max(x.threads for x in worker.samples)
        sc.rss_peak_mb = max([worker.hwm_kb, *(x.rss_kb for x in worker.samples)]) / 1024
        _collect_lateness(sc, world)
    finally:
        runtime.stop()
        world.close()
    return sc


def _wait_all_asleep(
    sc: Scenario, world: Any, worker: _Worker, started: float, base: float
) -> None:
    """Wait until every run is suspended; that must happen before the first due time."""
    last_note = time.time()
    while True:
        counts = world.count_runs()
        asleep = counts.get("suspended", 0)
        if asleep == sc.runs or time.time() >= base:
            break
        worker.check(counts)
        if time.time() - last_note >= 5:
            last_note = time.time()
            print(f"    {time.time() - started:5.1f}s: {counts}", flush=True)
        time.sleep(0.05)
    sc.ramp_s = time.time() - started
    sc.asleep_margin_s = base - time.time()
    sc.all_asleep = asleep == sc.runs
    if sc.all_asleep:
        print(
            f"  all {sc.runs} runs asleep {sc.ramp_s:.1f}s after the worker started "
            f"({sc.asleep_margin_s:.1f}s before the first due time)",
            flush=True,
        )
    else:
        print(
            f"  only {asleep} of {sc.runs} runs asleep at the first due time, "
            f"{sc.ramp_s:.1f}s after the worker started: raise --lead",
            flush=True,
        )


def _collect_lateness(sc: Scenario, world: Any) -> None:
    """Lateness of each run: when its second step ran minus its due time (from its result)."""
    from durable._serialization import loads

    records = world.list_runs(status="completed", limit=sc.runs + 1)
    sc.completed = len(records)
    results = [cast(dict[str, float], loads(r.output)) for r in records if r.output]
    sc.lateness = sorted(r["woke"] - r["due"] for r in results)
    sc.wake_window_s = max(r["woke"] for r in results) - min(r["due"] for r in results)


def _wait_for_line(path: Path, text: str, child: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if child.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{path.read_text(errors='replace')}")
        time.sleep(0.02)
    raise RuntimeError(f"worker did not start in {timeout}s:\n{path.read_text(errors='replace')}")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _report(scenarios: list[Scenario], command: str) -> bool:
    main = scenarios[-1]
    late = main.lateness
    p50, p99, worst = (_percentile(late, 0.5), _percentile(late, 0.99), late[-1])
    early = sum(1 for x in late if x < 0)
    print()
    print(f"sleepers benchmark: {command}")
    print(f"  worker: durable worker bench.sleepers {' '.join(main.worker_args)}".rstrip())
    for sc in scenarios:
        print(
            f"  {sc.runs:>6} runs: recorded in {sc.record_s:.1f}s, asleep after {sc.ramp_s:.1f}s, "
            f"threads asleep/peak {sc.threads_asleep}/{sc.threads_peak}, "
            f"RSS asleep {sc.rss_asleep_mb:.0f} MB peak {sc.rss_peak_mb:.0f} MB, "
            f"lateness p50 {_percentile(sc.lateness, 0.5):.3f}s "
            f"p99 {_percentile(sc.lateness, 0.99):.3f}s max {sc.lateness[-1]:.3f}s "
            f"(due over {sc.spread:g}s, all woken {sc.wake_window_s:.1f}s after the first due), "
            f"worker CPU per wake-up {sc.wake_cpu_s / max(1, sc.runs) * 1e6:.0f} us"
        )
    print()
    ok = True
    all_asleep = all(sc.all_asleep for sc in scenarios)
    print(
        f"  {'all runs asleep at once':<38} "
        + ", ".join(
            f"{sc.runs}: " + (f"{sc.asleep_margin_s:.1f}s before due" if sc.all_asleep else "NO")
            for sc in scenarios
        )
        + f"   {'OK' if all_asleep else 'INVALID (raise --lead)'}"
    )
    ok &= all_asleep
    # A sleeping run holds no thread: the worker's threads are its main thread, the polling thread
    # and a pool that grows lazily up to --concurrency. "Flat" means within that bound at every
    # size (a thread per sleeping run would give thousands).
    bound = main.concurrency + 4
    flat = all(sc.threads_asleep <= bound for sc in scenarios)
    ok &= flat
    sizes = ", ".join(f"{sc.runs}: {sc.threads_asleep}" for sc in reversed(scenarios))
    print(
        f"  {'threads while all asleep':<38} {sizes}   target: flat, <= concurrency + 4 = {bound}"
        f"   {_verdict(flat)}"
    )
    rss_ok = main.rss_peak_mb < RSS_TARGET_MB
    ok &= rss_ok
    print(
        f"  {'worker RSS (asleep / peak VmHWM)':<38} {main.rss_asleep_mb:.0f} MB / "
        f"{main.rss_peak_mb:.0f} MB   target: < {RSS_TARGET_MB:.0f} MB   {_verdict(rss_ok)}"
    )
    late_ok = p99 < P99_TARGET_S
    ok &= late_ok
    print(
        f"  {'wake lateness p50 / p99 / max':<38} {p50:.3f}s / {p99:.3f}s / {worst:.3f}s"
        f"   target: p99 < {P99_TARGET_S:g}s   {_verdict(late_ok)}"
    )
    if early:
        print(f"  WARNING: {early} runs woke before their due time")
    complete = main.completed == main.runs
    ok &= complete
    print(f"  {'runs completed':<38} {main.completed}/{main.runs}   {_verdict(complete)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sleepers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=10_000, help="sleeping runs (default 10000)")
    parser.add_argument(
        "--baseline", type=int, default=1_000, help="runs of the comparison scenario (0: none)"
    )
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="seconds from recording the runs to the first due time "
        "(default: 10 s + 3.5 ms per run, i.e. 45 s for 10,000)",
    )
    parser.add_argument(
        "--spread", type=float, default=5.0, help="due times spread evenly over this many seconds"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="worker --concurrency")
    parser.add_argument("--poll-interval", type=float, default=None, help="worker --poll-interval")
    parser.add_argument(
        "--worker-command",
        default=None,
        help="command that stands for `durable` when starting the worker, e.g. to profile it "
        "(default: the installed `durable` console script)",
    )
    args = parser.parse_args(argv)
    if args.worker_command:
        _WORKER_COMMAND[:] = shlex.split(args.worker_command)
    worker_args: list[str] = []
    if args.concurrency is not None:
        worker_args += ["--concurrency", str(args.concurrency)]
    if args.poll_interval is not None:
        worker_args += ["--poll-interval", str(args.poll_interval)]

    sizes = [n for n in (args.baseline, args.runs) if n > 0]
    if len(sizes) == 2 and sizes[0] == sizes[1]:
        sizes = sizes[1:]
    scenarios = []
    for n in sizes:
        lead = args.lead if args.lead is not None else 10.0 + 0.0035 * n
        print(f"scenario: {n} runs, first due {lead:g}s after recording, spread {args.spread:g}s")
        concurrency = args.concurrency or 64  # `durable worker --concurrency` default
        scenarios.append(run_scenario(n, lead, args.spread, worker_args, concurrency))
    command = "python -m bench.sleepers " + " ".join(argv if argv is not None else sys.argv[1:])
    ok = _report(scenarios, command.strip())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
