"""Every test here starts on an empty moto server (moto slows down as its state grows)."""

from __future__ import annotations

import pytest

from tests.aws_server import reset


@pytest.fixture(autouse=True)
def _empty_moto(moto_endpoint: str) -> None:
    reset(moto_endpoint)
