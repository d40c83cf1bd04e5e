from __future__ import annotations

import os
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("typing_cases.py")


def test_public_api_passes_mypy_strict_as_users_write_it():
    api = pytest.importorskip("mypy.api")
    # No config file: a user's own strict settings, not this repository's looser test override.
    stdout, stderr, status = api.run(
        ["--strict", "--config-file=", f"--cache-dir={os.devnull}", str(CASES)]
    )
    assert status == 0, stdout + stderr
