"""Small things a user trial of the AWS world found (moto over HTTP where AWS is involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable._errors import ConfigurationError

boto3 = pytest.importorskip("boto3")

from worlds.aws._config import load_config  # noqa: E402


@pytest.mark.parametrize("url", ["aws://shop", "aws://shop/", "aws:///shop"])
def test_a_prefix_in_the_host_is_refused_with_the_right_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"the prefix goes in the query, aws://\?prefix=shop"):
        load_config(url, path=tmp_path / "aws.json")
