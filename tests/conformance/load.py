"""Sizing load tests by world."""

from __future__ import annotations

from durable.world import World


def volume(world: World, n: int) -> int:
    """How many of something a load test makes: fewer on the AWS world's emulator.

    moto answers one request at a time in ~5 ms, so the same property is checked with less
    load there.
    """
    return max(8, n // 5) if world.url.startswith("aws://") else n
