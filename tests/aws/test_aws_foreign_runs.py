"""A run whose workflow the workers that receive its message do not have (a deploy rolling out,
a fleet split by workflow) keeps a live message instead of ending in the dead-letter queue."""

from __future__ import annotations

import dataclasses

from durable.world import NewRun
from tests.aws_server import open_aws_world


def _queue_depth(world, attribute: str) -> int:
    found = world.queue._sqs.get_queue_attributes(  # the SQS client the world uses
        QueueUrl=world.queue.url, AttributeNames=[attribute]
    )
    return int(found["Attributes"][attribute])


def test_a_message_bounced_by_workers_without_the_workflow_is_sent_afresh(moto_endpoint):
    world = open_aws_world(moto_endpoint, receive_wait=0.0)
    try:
        world.create_run(NewRun("foreign-1", "billing.invoice", b"{}"), owner=None, lease_ttl=30)
        [message] = world.queue.receive(10, 0.0)
        assert message.run_id == "foreign-1"

        # Received once by a worker of other workflows: left for another worker.
        record, done = world.take_message(message, "worker-a", 30.0, {"shipping.label"})
        assert (record, done) == (None, False)

        # Received again and again by such workers: replaced, so the redrive never counts it out.
        bounced = dataclasses.replace(message, receives=3)
        record, done = world.take_message(bounced, "worker-a", 30.0, {"shipping.label"})
        assert (record, done) == (None, True)
        world.queue.delete(message.receipt)
        assert _queue_depth(world, "ApproximateNumberOfMessagesDelayed") == 1

        # A worker that has the workflow takes the run up from the fresh message.
        fresh = dataclasses.replace(message, receives=1)
        record, done = world.take_message(fresh, "worker-b", 30.0, {"billing.invoice"})
        assert done and record is not None and record.lease_owner == "worker-b"
    finally:
        world.close()
