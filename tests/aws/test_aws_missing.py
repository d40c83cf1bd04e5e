"""Errors about missing AWS resources say which ones, where, and why durable looked there.

A mistyped prefix, a wrong region, a directory without ``.durable/aws.json`` and a deleted
table all used to print the same "an AWS resource ... is missing" line (moto over HTTP).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.aws_server import REGION

boto3 = pytest.importorskip("boto3")

from cli import main  # noqa: E402


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Path:
    """A directory where `durable bootstrap --prefix shop` ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("DURABLE_WORLD", raising=False)
    assert durable("bootstrap", "--prefix", "shop").exit_code == 0
    return tmp_path


def durable(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def failure(*args: str) -> str:
    result = durable(*args)
    assert result.exit_code != 0, result.output
    return " ".join(result.stderr.split())


def test_a_mistyped_prefix_names_the_table_region_and_the_file(project: Path) -> None:
    said = failure("--world", "aws://?prefix=shpo", "runs")
    assert f"table shpo-runs does not exist in region {REGION}" in said
    assert "prefix shpo, named by the URL" in said
    assert f"{project / '.durable' / 'aws.json'} has no entry for it (only shop)" in said
    assert f"durable bootstrap --prefix shpo --region {REGION}" in said


def test_a_wrong_region_is_named(project: Path) -> None:
    said = failure("--world", "aws://?region=eu-west-2", "runs")
    assert "table shop-runs does not exist in region eu-west-2" in said
    assert f"prefix shop: the default of {project / '.durable' / 'aws.json'}" in said


def test_a_directory_without_the_file_says_it_used_the_default_prefix(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    said = failure("--world", "aws://", "runs")
    assert "table durable-runs does not exist" in said
    assert f"prefix durable: the default, since there is no .durable/aws.json in {elsewhere}" \
        in said


def test_a_deleted_table_is_named(project: Path, moto_endpoint: str) -> None:
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    ddb.delete_table(TableName="shop-runs")
    said = failure("--world", "aws://", "runs")
    assert f"table shop-runs does not exist in region {REGION} at {moto_endpoint}" in said
    assert "durable outputs --prefix NAME" in said
