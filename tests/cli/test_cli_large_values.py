"""Inputs too large for a command line, and errors too large to print whole."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

WORKLOAD = "tests.cli.cli_workload"
BIG = 450_000
"""Characters: past Linux's 128 KiB limit on one argument."""


def test_start_reads_args_from_a_file_or_stdin(cli, tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps(["y" * BIG]))
    from_file = cli("start", f"{WORKLOAD}:measure", f"@{path}", "--wait")
    assert from_file.stdout.splitlines()[1] == str(BIG)

    from_stdin = cli("start", f"{WORKLOAD}:measure", "-", "--wait", stdin=path.read_text())
    assert from_stdin.stdout.splitlines()[1] == str(BIG)

    refused = cli("start", f"{WORKLOAD}:measure", "-", stdin='"not a list"', ok=False)
    assert refused.stderr.startswith("Error: ARGS (from stdin) must be a JSON list")
    assert "`-` reads ARGS from stdin and `@FILE` from a file" in " ".join(
        cli("start", "--help").stdout.split()
    )


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_resume_reads_the_payload_from_stdin_or_a_file(cli, tmp_path, source):
    workflow, run = f"{WORKLOAD}:approval", ["--run-id", "approval-1"]
    deadline = time.monotonic() + 30
    # Until the run waits on its hook: on a busy machine half a second may end the first try
    # before that (starting the same run id again runs it on).
    cli("start", workflow, '["big:1"]', *run, "--wait", "--timeout", "0.5", ok=False)
    while "big:1" not in [h["token"] for h in cli.json("hooks")["hooks"]]:
        assert time.monotonic() < deadline, cli.json("runs")
        cli("start", workflow, '["big:1"]', *run, "--wait", "--timeout", "0.5", ok=False)
    payload = json.dumps({"text": "z" * BIG})
    if source == "stdin":
        resumed = cli("resume", "big:1", "-", stdin=payload)
    else:
        (tmp_path / "payload.json").write_text(payload)
        resumed = cli("resume", "big:1", f"@{tmp_path / 'payload.json'}")
    assert "resumed run approval-1" in resumed.stdout
    done = cli("start", workflow, '["big:1"]', *run, "--wait")  # runs it on, here
    assert done.stdout.splitlines()[1] == str(BIG)
    assert "`@FILE` from a file" in " ".join(cli("resume", "--help").stdout.split())


@pytest.mark.parametrize("command", ["start", "resume"])
def test_a_missing_input_file_is_one_clear_line(cli, tmp_path, command):
    cli("world", "info")
    missing = tmp_path / "nope.json"
    args = [f"{WORKLOAD}:greet"] if command == "start" else ["some:token"]
    proc = cli(command, *args, f"@{missing}", ok=False)
    name = "ARGS" if command == "start" else "PAYLOAD"
    assert proc.stderr == f"Error: cannot read {name} from '{missing}': No such file or directory\n"
    assert proc.stdout == ""


def test_a_huge_error_is_cut_short_for_people_but_whole_in_json(cli):
    proc = cli("start", f"{WORKLOAD}:blow_up", "[500000]", "--wait", "--run-id", "boom", ok=False)
    [line] = proc.stderr.splitlines()
    assert len(line) < 2_000
    assert line.startswith("Error: run boom failed: ") and "FatalError: xxxx" in line
    assert "more characters; `durable inspect boom` or `durable events boom --json` shows it" in (
        line
    )
    [event] = [e for e in cli.json("events", "boom")["events"] if e["kind"] == "run_failed"]
    assert event["data"]["message"] == "x" * 500_000
    error = f"{event['data']['type']}: {event['data']['message']}"
    kept, _, note = line.partition("failed: ")[2].partition("… [")
    assert error.startswith(kept)
    assert len(kept) + int(note.split(" more")[0].replace(",", "")) == len(error)

    proc = cli("start", f"{WORKLOAD}:blow_up", "[500000]", "--wait", "--json", ok=False)
    assert json.loads(proc.stdout)["error"]["message"] == "x" * 500_000


FLOWS = """
import pydantic
import durable


class Member(pydantic.BaseModel):
    name: str
    age: int


@durable.workflow
def member_approval(token: str) -> str:
    return durable.create_hook(token=token, timeout="1d", model=Member).wait().name
"""


def test_resume_where_the_hooks_model_cannot_be_imported_delivers_nothing(cli, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "member_flows.py").write_text(FLOWS)
    inside = {**cli.env, "PYTHONPATH": str(project)}
    outside = {k: v for k, v in cli.env.items() if k != "PYTHONPATH"}

    def durable_cmd(env, *args):
        return subprocess.run([cli.script, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    started = durable_cmd(inside, "start", "member_flows:member_approval", '["member:1"]',
                          "--run-id", "member-1", "--wait", "--timeout", "0.5")
    assert "still" in started.stderr, started.stderr
    refused = durable_cmd(outside, "resume", "member:1", '{"name": "ada", "age": "old"}')
    assert refused.returncode != 0
    assert "cannot check the payload for hook 'member:1' against its model" in refused.stderr
    assert "nothing was delivered" in refused.stderr
    assert not any(e["kind"] == "hook_received" for e in cli.json("events", "member-1")["events"])
    # Where the model imports, a payload that fits goes through.
    resumed = durable_cmd(inside, "resume", "member:1", '{"name": "ada", "age": 36}')
    assert resumed.returncode == 0, resumed.stderr
    assert any(e["kind"] == "hook_received" for e in cli.json("events", "member-1")["events"])


def test_resume_imports_the_hooks_model_from_the_current_directory(cli, tmp_path):
    # As `durable start` and `durable worker` do: no PYTHONPATH needed in the project's directory.
    project = tmp_path / "project"
    project.mkdir()
    (project / "member_flows.py").write_text(FLOWS)
    env = {k: v for k, v in cli.env.items() if k != "PYTHONPATH"}

    def durable_cmd(*args):
        return subprocess.run([cli.script, *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=60)

    started = durable_cmd("start", "member_flows:member_approval", '["member:2"]',
                          "--run-id", "member-2", "--wait", "--timeout", "0.5")
    assert "still" in started.stderr, started.stderr
    refused = durable_cmd("resume", "member:2", '{"name": "ada", "age": "old"}')
    assert refused.returncode != 0
    # Checked against the model, which imports: refused for not fitting, not for the import.
    assert "payload for hook 'member:2' does not fit member_flows:Member" in refused.stderr
    resumed = durable_cmd("resume", "member:2", '{"name": "ada", "age": 36}')
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed run member-2 (hook member:2)" in resumed.stdout
    [received] = [e for e in cli.json("events", "member-2")["events"]
                  if e["kind"] == "hook_received"]
    assert received["data"] == {"name": "ada", "age": 36}
