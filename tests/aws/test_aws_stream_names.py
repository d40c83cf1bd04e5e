"""Stream names are checked like run ids and hook tokens, not refused by DynamoDB mid-run."""

from __future__ import annotations

import pytest

import durable
from durable import WorkflowFailed, step, workflow
from durable._errors import WorldError
from durable.world import NewRun
from tests.aws_server import open_aws_world, running
from worlds.memory import MemoryWorld

pytest.importorskip("boto3")


@step
def announce(name: str) -> str:
    durable.stream(name).write("hello")
    return name[:3]


@workflow(name="aws_stream_names.announcer")
def announcer(name: str) -> str:
    return announce(name)


@pytest.mark.parametrize("kind", ["aws", "memory"])
def test_a_stream_name_over_256_characters_is_refused_clearly(
    moto_endpoint: str, kind: str
) -> None:
    world = open_aws_world(moto_endpoint) if kind == "aws" else MemoryWorld("memory://")
    with running(world):
        assert announcer("s" * 256) == "sss"
        run = announcer.start("s" * 2000)
        with pytest.raises(WorkflowFailed) as failed:
            run.result(timeout=20)
    assert failed.value.error_type.endswith("ValueError")
    assert "stream name is 2000 characters long; the most is 256" in str(failed.value)
    assert "ValidationException" not in str(failed.value)


def test_the_aws_world_names_a_stream_name_too_long_in_bytes(moto_endpoint: str) -> None:
    world = open_aws_world(moto_endpoint)
    world.create_run(NewRun("r1", "wf", b"in"), owner="A", lease_ttl=30)
    name = "\U0001d11e" * 256  # 256 characters, 1,024 bytes in UTF-8
    with pytest.raises(WorldError, match="1024 bytes long in UTF-8; the AWS world keeps"):
        world.write_chunks("r1", "A", name, "1", 0, [b"x"])
    with pytest.raises(WorldError, match="at most 1000 bytes"):
        world.read_chunks("r1", name)
    world.close()
