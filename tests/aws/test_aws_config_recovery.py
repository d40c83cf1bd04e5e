"""A corrupt ``.durable/aws.json`` is no dead end: bootstrap keeps it aside and writes a new one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.aws_server import REGION

boto3 = pytest.importorskip("boto3")

from cli import main  # noqa: E402
from worlds.aws._config import load_config  # noqa: E402

GARBAGE = '{"default": "shop", "prefixes": {"shop": {'


@pytest.fixture
def corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("DURABLE_WORLD", raising=False)
    (tmp_path / ".durable").mkdir()
    file = tmp_path / ".durable" / "aws.json"
    file.write_text(GARBAGE)
    return file


def durable(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_bootstrap_keeps_the_unreadable_file_aside_and_writes_a_new_one(corrupt: Path) -> None:
    refused = durable("--world", "aws://", "runs")
    assert refused.exit_code != 0
    said = " ".join(refused.stderr.split())
    assert "cannot read .durable/aws.json" in said
    assert "keeps it aside as aws.json.corrupt-<time> and writes a new one" in said

    done = durable("bootstrap", "--prefix", "shop")
    assert done.exit_code == 0, done.output
    said = " ".join(done.stderr.split())
    assert "warning: .durable/aws.json could not be read; kept it as .durable/aws.json.corrupt-" \
        in said
    (aside,) = corrupt.parent.glob("aws.json.corrupt-*")
    assert aside.read_text() == GARBAGE
    assert load_config("aws://").prefix == "shop"
    assert durable("--world", "aws://", "runs").exit_code == 0


def test_teardown_needs_the_prefix_and_region_named_when_the_file_is_unreadable(
    corrupt: Path,
) -> None:
    refused = durable("teardown", "--yes")
    assert refused.exit_code != 0
    assert "name what to remove: --prefix NAME --region REGION" in " ".join(
        refused.stderr.split()
    )
    gone = durable("teardown", "--prefix", "shop", "--region", REGION, "--yes")
    assert gone.exit_code == 0, gone.output
    assert "removing prefix shop in us-east-1 from the options alone" in gone.stderr
    assert corrupt.read_text() == GARBAGE
