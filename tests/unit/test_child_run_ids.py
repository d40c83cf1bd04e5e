"""Derived child run ids stay short enough for every world however deep the recursion."""

from __future__ import annotations

import durable
import durable.testing
from durable._children import CHILD_ID_LIMIT, child_token, derived_child_id
from durable.world import MAX_KEY_LENGTH, check_key

LONG_ROOT = "order-" + "x" * 190  # a caller-chosen id, long but valid


@durable.workflow(name="bounded_ids_descend")
def bounded_ids_descend(depth: int) -> list[str]:
    """Starts itself as a child ``depth`` levels deep; returns the run ids, deepest first."""
    if depth == 0:
        return []
    child = bounded_ids_descend.start(depth - 1)
    return [*child.result(), child.id]


@durable.workflow(name="bounded_ids_explicit")
def bounded_ids_explicit(child_id: str) -> str:
    return bounded_ids_descend.with_options(run_id=child_id).start(0).id


def test_thirty_levels_of_recursion_keep_every_id_within_the_key_limit():
    with durable.testing.world():
        run = bounded_ids_descend.with_options(run_id=LONG_ROOT).start(30)
        ids = run.result(timeout=60)
        assert len(ids) == 30 and len(set(ids)) == 30
        for run_id in ids:
            assert len(run_id) <= CHILD_ID_LIMIT, run_id
            check_key(run_id, "run_id")
            check_key(child_token(run_id), "hook token")
            assert durable.get_run(run_id).status == "completed"
        # The shallow ones keep the readable parent.op form; the deep ones its hashed form.
        assert ids[-1] == f"{LONG_ROOT}.1"
        assert all(run_id.startswith(LONG_ROOT[:100]) for run_id in ids)
        # Each id is what its parent's id derives: the same on replay and after a crash.
        parents = [LONG_ROOT, *reversed(ids)][:-1]
        assert list(reversed(ids)) == [derived_child_id(p, "1") for p in parents]


def test_derived_ids_are_deterministic_and_distinct():
    parent = "p" * 249
    assert derived_child_id(parent, "3") == derived_child_id(parent, "3")
    assert derived_child_id(parent, "3") != derived_child_id(parent, "4")
    assert derived_child_id(parent, "3") != derived_child_id("q" + parent[1:], "3")
    deep_op = ".".join(["7"] * 200)  # nested branches: the op id alone is past the limit
    assert len(derived_child_id(parent, deep_op)) <= CHILD_ID_LIMIT
    assert derived_child_id("wrun_abc", "2.1") == "wrun_abc.2.1"  # short ids are unchanged


def test_an_explicit_child_run_id_is_left_alone():
    explicit = "c" * MAX_KEY_LENGTH
    with durable.testing.world():
        assert bounded_ids_explicit.start(explicit).result(timeout=30) == explicit
