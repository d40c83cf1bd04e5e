"""Bad AWS settings give one durable line naming the setting and the fix, not botocore's error.

AWS_PROFILE naming no profile, an endpoint without a scheme and one with a mistyped scheme
used to surface as ``unexpected ProfileNotFound``, ``unexpected ValueError: Invalid
endpoint`` and ``HTTPClientError`` (a traceback from the Python API and the Lambda handler).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from durable._errors import ConfigurationError
from tests.aws_server import REGION, fake_credentials

boto3 = pytest.importorskip("boto3")

import durable.aws  # noqa: E402
from cli import main  # noqa: E402
from worlds.aws import AwsWorld  # noqa: E402


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_credentials()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("DURABLE_WORLD", raising=False)
    return tmp_path


def cli_error(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code != 0, result.output
    said = " ".join(result.stderr.split())
    assert "unexpected" not in said, said
    return said


def test_a_profile_that_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    expected = "AWS_PROFILE names the AWS profile 'nosuch', which is not in ~/.aws/config"
    with pytest.raises(ConfigurationError, match=expected):
        AwsWorld(f"aws://?prefix=shop&region={REGION}")
    with pytest.raises(ConfigurationError, match=expected):
        durable.aws.make_handler(f"aws://?prefix=shop&region={REGION}", [])
    assert expected in cli_error("--world", "aws://?prefix=shop", "runs")
    assert expected in cli_error("bootstrap", "--prefix", "shop")
    assert expected in cli_error("outputs", "--prefix", "shop")


@pytest.mark.parametrize(
    ("endpoint", "fixed"),
    [("localhost:5055", "http://localhost:5055"), ("htp://localhost:5055", "http://localhost:5055")],
)
def test_an_endpoint_that_is_not_a_url(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, fixed: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"the endpoint URL .* is '{endpoint}'"):
        AwsWorld(f"aws://?prefix=shop&region={REGION}&endpoint_url={endpoint}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    said = f"AWS_ENDPOINT_URL is '{endpoint}', not an http:// or https:// URL: give the scheme"
    assert f"{said} and the host, e.g. {fixed}" in cli_error("--world", "aws://", "runs")
    assert said in cli_error("bootstrap", "--prefix", "shop")
