"""`durable retry --json` prints one shape however many runs it was given."""

from __future__ import annotations

import json

WORKLOAD = "tests.cli.cli_workload"


def test_retry_of_one_run_prints_the_same_json_shape_as_of_several(cli):
    doomed = cli("start", f"{WORKLOAD}:doomed", '["declined"]', "--wait", ok=False).stdout.strip()
    assert cli.json("retry", doomed) == {"retried": [doomed], "refused": []}
    # Now pending, not failed: refused, reported in the same shape, exit status 1.
    again = cli("retry", doomed, "--json", ok=False)
    assert again.returncode == 1
    doc = json.loads(again.stdout)
    assert doc["retried"] == [] and [r["id"] for r in doc["refused"]] == [doomed]
    assert "only a failed run can be retried" in doc["refused"][0]["reason"]
    missing = json.loads(cli("retry", "no-such-run", "--json", ok=False).stdout)
    assert missing["refused"][0]["id"] == "no-such-run"
    assert "no run with id 'no-such-run'" in missing["refused"][0]["reason"]


def test_retry_of_one_run_without_json_prints_its_line_or_its_error(cli):
    doomed = cli("start", f"{WORKLOAD}:doomed", '["declined"]', "--wait", ok=False).stdout.strip()
    assert cli("retry", doomed).stdout.strip() == (
        f"retrying run {doomed}: pending for a worker of doomed"
    )
    refused = cli("retry", doomed, ok=False)
    assert refused.stdout == "" and "only a failed run can be retried" in refused.stderr
