"""A script that ends while its runs execute: Ctrl-C leaves them to a worker, quietly."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.cli.background import Running

WORKLOAD = "tests.cli.cli_workload"

SCRIPT = textwrap.dedent(
    f"""
    from {WORKLOAD} import crawl
    print("started", crawl.with_options(run_id="left").start(60).id, flush=True)
    """
)


@pytest.mark.timeout(90)
def test_ctrl_c_while_a_script_waits_for_its_runs_at_exit_leaves_them_to_a_worker(cli):
    with Running(cli, "-c", SCRIPT, program=sys.executable) as ended:
        ended.wait_for("waiting for 1 run(s) executing here to finish or suspend")
        ended.interrupt()
        code, out, err = ended.finish()
        assert code == 130, err
        assert out == "started left\n"
        assert "left 1 run(s) to a worker: left (a worker takes them over once their leases " \
            "lapse)" in err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
