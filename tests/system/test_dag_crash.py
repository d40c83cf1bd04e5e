"""SIGKILL a worker in the middle of a DAG run; a fresh worker finishes it.

Finished nodes (their step's result recorded) never run again; only nodes in flight at the kill
may run twice (once in the victim, once in the rescuer), and the result is right.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

import durable
import durable.dag
from durable.world import Event
from tests.system._support import Procs, env_for, local_durable, sqlite_url, wait_until
from tests.system.workloads import dag_crashy

MODULES = ["durable.dag", "tests.system.workloads.dag_crashy"]
WORKER_OPTIONS = ("--lease-ttl", "2", "--poll-interval", "0.05")
TRIALS = 3


def _effects(path: Path, run_id: str) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        rid, node, pid = line.split(" ")
        if rid == run_id:
            rows.append((node, int(pid)))
    return rows


def _finished_nodes(events: list[Event], prefixes: dict[str, str]) -> set[str]:
    by_op = {f"{prefix}1": node for node, prefix in prefixes.items()}
    return {by_op[e.op_id] for e in events if e.kind == "step_completed" and e.op_id in by_op}


@pytest.mark.timeout(120)
def test_sigkill_mid_dag_does_not_rerun_finished_nodes(tmp_path: Path, procs: Procs):
    rng = random.Random()
    db = tmp_path / "dag.db"
    effects = tmp_path / "effects.txt"
    url = sqlite_url(db)
    env = env_for(url, DAG_EFFECTS=str(effects))
    spec = dag_crashy.spec()
    prefixes = durable.dag.node_prefixes(spec)
    nodes = set(dag_crashy.NODES)

    with local_durable(url) as runtime:
        world = runtime.world
        for trial in range(TRIALS):
            run_id = f"dag-crash-{trial}"
            durable.dag.start(spec, run_id=run_id, execute=False)
            victim = procs.worker(MODULES, env, *WORKER_OPTIONS)
            # Kill right after the k-th node's side effect, while that node is in flight.
            kill_after = rng.randint(2, len(nodes) - 2)
            context = f"trial {trial}: kill after {kill_after} side effects"
            wait_until(
                lambda run_id=run_id, k=kill_after: len(_effects(effects, run_id)) >= k,
                30,
                f"{kill_after} node side effects ({context})",
            )
            time.sleep(rng.uniform(0.0, 0.05))
            victim.kill()

            at_kill = world.read_events(run_id)
            finished_at_kill = _finished_nodes(at_kill, prefixes)
            tried_at_kill = {node for node, _ in _effects(effects, run_id)}
            in_flight = tried_at_kill - finished_at_kill
            assert finished_at_kill <= tried_at_kill, context
            assert world.get_run(run_id).status not in ("completed", "failed"), context
            assert in_flight, context

            rescuer = procs.worker(MODULES, env, *WORKER_OPTIONS)
            wait_until(
                lambda run_id=run_id: world.get_run(run_id).status in ("completed", "failed"),
                30,
                f"run {run_id} to be recovered ({context})",
            )
            assert rescuer.stop() == 0, rescuer.stderr.text
            assert "Traceback" not in rescuer.stderr.text, rescuer.stderr.text

            assert world.get_run(run_id).status == "completed", context
            assert durable.get_run(run_id).result(timeout=5) == dag_crashy.expected(), context

            tried = _effects(effects, run_id)
            counts = Counter(node for node, _ in tried)
            assert set(counts) == nodes, (context, counts)
            twice = {node for node, n in counts.items() if n == 2}
            assert all(n in (1, 2) for n in counts.values()), (context, counts)
            # A node whose result was recorded before the kill never runs again; only nodes in
            # flight at the kill may run a second time, in the rescuer.
            assert twice <= in_flight, (context, twice, in_flight)
            for node in finished_at_kill:
                assert [pid for n, pid in tried if n == node] == [victim.pid], (context, node)
            for node in twice:
                assert [pid for n, pid in tried if n == node] == [victim.pid, rescuer.pid]
            events = world.read_events(run_id)
            done = Counter(e.op_id for e in events if e.kind == "step_completed")
            assert all(n == 1 for n in done.values()), (context, done)
            assert _finished_nodes(events, prefixes) == nodes, context
            print(
                f"{context}: {len(finished_at_kill)} nodes finished, in flight "
                f"{sorted(in_flight)}, ran twice {sorted(twice)}"
            )
