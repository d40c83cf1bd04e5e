"""Ctrl-C: the first stops gracefully and says what it waits for, the second stops at once."""

from __future__ import annotations

import signal
import time

import pytest

from tests.cli.background import Running, wait_for_status

WORKLOAD = "tests.cli.cli_workload"


@pytest.mark.timeout(90)
def test_a_second_ctrl_c_stops_a_worker_at_once(cli):
    cli.start("crawl", "[60]", "--run-id", "long")
    with Running(cli, "worker", WORKLOAD, "--poll-interval", "0.05") as worker:
        wait_for_status(cli, "long", "running")
        time.sleep(0.5)  # the step has started
        worker.interrupt()
        said = worker.wait_for("stopping:")
        assert "stopping: waiting for 1 run in progress to reach a durable point: long (crawl, " \
            "step 'dawdle') (Ctrl-C again to stop at once)" in said, said
        started = time.monotonic()
        worker.interrupt()
        code, _, err = worker.finish()
        assert code == 130 and time.monotonic() - started < 10, err
        assert "stopped at once (second Ctrl-C), leaving 1 run mid-step: long (crawl, step " \
            "'dawdle'); another worker takes it over when its lease lapses, running again only " \
            "the steps that were in flight" in err
        assert "Traceback" not in err
        assert cli.json("inspect", "long")["run"]["status"] == "running"


@pytest.mark.timeout(90)
def test_sigterm_stays_graceful_however_often_it_comes(cli):
    cli.start("crawl", "[8]", "--run-id", "short")
    with Running(cli, "worker", WORKLOAD, "--poll-interval", "0.05") as worker:
        wait_for_status(cli, "short", "running")
        for _ in range(2):
            worker.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        code, _, err = worker.finish()
        assert code == 0, err
        assert err.rstrip().endswith("INFO stopped")
        assert cli.json("inspect", "short")["run"]["status"] == "completed"  # its step finished


@pytest.mark.timeout(90)
def test_a_second_ctrl_c_stops_dev_at_once(cli):
    cli.start("crawl", "[60]", "--run-id", "long")
    with Running(cli, "dev", WORKLOAD, "--plain", merged=True) as dev:
        wait_for_status(cli, "long", "running")
        time.sleep(0.5)
        dev.interrupt()
        said = dev.wait_for("stopping:")
        assert "long (crawl, step 'dawdle') (Ctrl-C again to stop at once)" in said, said
        dev.interrupt()
        code, _, text = dev.finish()
        assert code == 130, text
        assert "stopped at once (second Ctrl-C), leaving 1 run mid-step: long" in text
        assert "Traceback" not in text
