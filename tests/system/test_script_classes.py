"""Classes defined in the script being run: values load as that script's own classes."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.system._support import run_script, sqlite_url

SCRIPT = textwrap.dedent(
    """
    import enum
    from dataclasses import dataclass

    import pydantic

    from durable import step, workflow


    class Color(enum.Enum):
        RED = "red"


    class Note(pydantic.BaseModel):
        text: str


    @dataclass
    class Order:
        id: str
        color: Color
        note: Note


    @step
    def charge(order: Order) -> Order:
        assert type(order) is Order, type(order)
        return order


    @workflow
    def place(order: Order) -> tuple[Order, Color]:
        back = charge(order)
        assert type(back) is Order and back.color is Color.RED and type(back.note) is Note
        return back, Color.RED


    # No `if __name__ == "__main__":` guard: loading a value must not run this again.
    print("body ran")
    order = Order("A-1", Color.RED, Note(text="fragile"))
    print("equal:", place(order) == (order, Color.RED))
    """
)


def test_a_script_without_a_main_guard_runs_once_and_gets_its_own_classes_back(
    tmp_path: Path,
) -> None:
    done = run_script(tmp_path, "shop_script.py", SCRIPT, sqlite_url(tmp_path / "durable.db"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["body ran", "equal: True"]


ERRORS_SCRIPT = textwrap.dedent(
    """
    from durable import RetryPolicy, StepFailed, step, workflow


    class Payments:
        class Declined(Exception):
            pass


    @step(retry=RetryPolicy(max_attempts=1))
    def charge() -> None:
        raise Payments.Declined("card declined")


    @step(retry=RetryPolicy(max_attempts=1))
    def refund() -> None:
        class Refused(Exception):
            pass

        raise Refused("no refunds")


    @workflow
    def checkout() -> list[str]:
        seen = []
        try:
            charge()
        except Payments.Declined as exc:
            seen.append(f"declined: {exc}")
        try:
            refund()
        except StepFailed as exc:
            seen.append(f"step failed: {exc.error_type}")
        return seen


    # No `if __name__ == "__main__":` guard: rebuilding an error must not run this again.
    print("body ran")
    print(checkout())
    """
)


def test_errors_of_nested_and_local_classes_in_a_script_never_import_it_again(
    tmp_path: Path,
) -> None:
    # A nested class is rebuilt as the script's own (the workflow's except clause catches it);
    # one defined inside a function cannot be found by name and comes back as StepFailed.
    url = sqlite_url(tmp_path / "durable.db")
    done = run_script(tmp_path, "pay_script.py", ERRORS_SCRIPT, url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "body ran",
        "['declined: card declined', 'step failed: pay_script.refund.<locals>.Refused']",
    ]
