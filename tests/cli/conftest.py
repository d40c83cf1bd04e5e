"""Fixtures for CLI tests: the real `durable` console script against a temporary world."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = "tests.cli.cli_workload"


def durable_script() -> str:
    found = shutil.which("durable")
    if found:
        return found
    beside = Path(sys.executable).parent / "durable"
    if beside.exists():
        return str(beside)
    pytest.skip("the `durable` console script is not installed (pip install -e .)")


@dataclass
class Cli:
    """Runs `durable ...` in a subprocess with DURABLE_WORLD pointing at a temporary world."""

    script: str
    env: dict[str, str]
    url: str

    def __call__(
        self, *args: str, ok: bool | None = True, timeout: float = 30, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.script, *args],
            input=stdin,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if ok is True:
            assert proc.returncode == 0, f"durable {' '.join(args)} failed:\n{proc.stderr}"
        elif ok is False:
            assert proc.returncode != 0, f"durable {' '.join(args)} succeeded:\n{proc.stdout}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def start(self, workflow: str, *args: str) -> str:
        """Start a run of a workflow of the test workload; returns its id."""
        proc = self("start", f"{WORKLOAD}:{workflow}", *args)
        return proc.stdout.splitlines()[0].strip()


def make_cli(path: Path) -> Cli:
    url = f"sqlite:///{path}"
    env = dict(os.environ)
    env["DURABLE_WORLD"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("DURABLE_FORCE_REPLAY", None)
    env.pop("DURABLE_DEBUG", None)
    return Cli(durable_script(), env, url)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path / "world.db")
