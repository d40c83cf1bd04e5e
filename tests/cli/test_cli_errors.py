"""Mistakes give one clear line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import pytest

WORKLOAD = "tests.cli.cli_workload"

CASES = [
    pytest.param(["inspect", "wrun_nope"], "no run with id 'wrun_nope'", id="inspect-unknown-run"),
    pytest.param(["events", "wrun_nope", "--json"], "no run with id", id="events-unknown-run"),
    pytest.param(["cancel", "wrun_nope"], "no run with id", id="cancel-unknown-run"),
    pytest.param(["hooks", "--run", "wrun_nope"], "no run with id", id="hooks-unknown-run"),
    pytest.param(
        ["start", f"{WORKLOAD}:greet", '["unterminated'], "ARGS is not valid JSON", id="bad-json"
    ),
    pytest.param(
        ["start", f"{WORKLOAD}:greet", '"ada"'], "must be a JSON list", id="json-not-list"
    ),
    pytest.param(
        ["start", "no_such_module_xyz:greet", "[]"],
        "could not import 'no_such_module_xyz': ModuleNotFoundError",
        id="bad-module",
    ),
    pytest.param(
        ["start", f"{WORKLOAD}:missing", "[]"],
        "workflow 'missing' not found in module 'tests.cli.cli_workload' (it defines: ",
        id="unknown-workflow",
    ),
    pytest.param(
        ["start", f"{WORKLOAD}:QUICK_RETRY", "[]"], "is not a @workflow", id="not-a-workflow"
    ),
    pytest.param(["start", f"{WORKLOAD}:greet", "[]"], "missing a required argument", id="arity"),
    pytest.param(["start", "greet", "[]"], "expected MODULE:WORKFLOW", id="no-colon"),
    pytest.param(["gc", "--older-than", "soon"], 'invalid duration "soon"', id="bad-duration"),
    pytest.param(["--world", "nowhere", "runs"], "has no scheme", id="bad-world-url"),
    pytest.param(
        ["runs", "--world", "sqlite:///no/such/typo.db"],
        "no/such/typo.db: nothing has run there",
        id="missing-world-file",
    ),
    pytest.param(["--world", "ftp://x", "world", "info"], "unknown world scheme", id="bad-scheme"),
    pytest.param(
        ["start", f"{WORKLOAD}:greet", '["a"]', "--world", "memory://"],
        "memory:// keeps runs inside this process, which exits once the run is recorded: add "
        "--wait",
        id="memory-without-wait",
    ),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_error_is_one_line_and_nonzero_exit(cli, args, message):
    cli("world", "info")  # the world exists: "no run with id" is about the run
    proc = cli(*args, ok=False)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""


def test_a_module_that_raises_on_import_is_one_line_that_says_where(cli, tmp_path):
    (tmp_path / "broken_mod.py").write_text("import os\n\nraise RuntimeError('boom at import')\n")
    cli.env["PYTHONPATH"] = f"{tmp_path}:{cli.env['PYTHONPATH']}"
    proc = cli("start", "broken_mod:anything", "[]", ok=False)
    assert proc.stderr.strip() == (
        "Error: could not import 'broken_mod': RuntimeError: boom at import (raised at "
        f"{tmp_path / 'broken_mod.py'}:3; DURABLE_DEBUG=1 shows the traceback)"
    )
    worker = cli("worker", "broken_mod", ok=False)
    assert worker.stderr.strip().splitlines()[-1].startswith("Error: could not import")
    assert "Traceback" not in worker.stderr


def test_an_import_error_inside_a_library_points_at_the_users_line(cli, tmp_path):
    # The KeyError is raised in os.py; the line to fix is the one in settings.py that asked.
    (tmp_path / "settings.py").write_text(
        "import os\n\n\ndef load():\n    return os.environ['NO_SUCH_VARIABLE_XYZ']\n"
    )
    (tmp_path / "app_mod.py").write_text("import settings\n\nURL = settings.load()\n")
    cli.env["PYTHONPATH"] = f"{tmp_path}:{cli.env['PYTHONPATH']}"
    proc = cli("dev", "app_mod", ok=False)
    [line] = proc.stderr.splitlines()
    assert line.startswith("Error: could not import 'app_mod': KeyError: 'NO_SUCH_VARIABLE_XYZ'")
    assert f"(raised at {tmp_path / 'settings.py'}:5 in load; DURABLE_DEBUG=1" in line

    cli.env["DURABLE_DEBUG"] = "1"
    debug = cli("dev", "app_mod", ok=False)
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert 'app_mod.py", line 3, in <module>' in debug.stderr
    assert debug.stderr.splitlines()[-1] == (
        "Error: could not import 'app_mod': KeyError: 'NO_SUCH_VARIABLE_XYZ' (raised at "
        f"{tmp_path / 'settings.py'}:5 in load)"
    )


def test_an_aws_world_without_a_region_says_to_bootstrap(cli, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        cli.env.pop(name, None)
    cli.env["AWS_CONFIG_FILE"] = str(tmp_path / "no-aws-config")
    proc = cli("--world", f"aws://?config={tmp_path / 'missing.json'}", "runs", ok=False)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "the AWS world has no region: run `durable bootstrap --region NAME` first" in (
        proc.stderr
    )


def test_a_module_file_outside_the_working_directory_is_imported_by_its_path(cli, tmp_path):
    (tmp_path / "far_mod.py").write_text(
        "import durable\n\n\n@durable.workflow(name='far_mod.far')\ndef far() -> str:\n"
        "    return 'far'\n"
    )
    proc = cli("start", f"{tmp_path / 'far_mod.py'}:far", "[]")
    assert "wrun_" in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--concurrency", "0", WORKLOAD], "'--concurrency': 0 is not in the range x>=1"),
        (["worker", "--lease-ttl", "0", WORKLOAD], "'--lease-ttl': 0.0 is not in the range x>=1"),
        (["worker", "--poll-interval", "-1", WORKLOAD], "'--poll-interval': -1.0 is not in"),
        (["dev", "--refresh", "0", WORKLOAD], "'--refresh': 0.0 is not in the range x>=0.05"),
    ],
    ids=["concurrency", "lease-ttl", "poll-interval", "refresh"],
)
def test_worker_options_out_of_range_are_refused(cli, args, message):
    proc = cli(*args, ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_a_worker_given_a_workflow_instead_of_a_module_says_to_name_the_module(cli):
    proc = cli("worker", f"{WORKLOAD}:greet", ok=False)
    assert f"'{WORKLOAD}:greet' is not a module: give a module" in proc.stderr, proc.stderr
