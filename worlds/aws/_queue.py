"""The SQS queue of runs to execute and wake-ups.

A message says "look at run R at time T" (``{"run": R, "at": T, "kind": K}``); it is a hint,
never the state: whoever receives it reads the run and acts on what the run says. So a message
received twice, late or for a finished run does no harm. SQS delays a message at most 15 minutes
(``max_delay``); a message received before its time is sent again for the rest of the wait.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

from worlds.aws._errors import translate

MessageKind = Literal["start", "wake", "watch", "hook"]
"""Why it was sent: a new or handed-back run; a sleep's end; a check that the worker executing
a run is alive (sent when a run starts executing where it was created); a hook was resumed."""


@dataclass(frozen=True, slots=True)
class Message:
    """A received message."""

    run_id: str
    at: float
    kind: str
    receipt: str
    receives: int


def encode(run_id: str, at: float, kind: str) -> str:
    """A message body."""
    return json.dumps({"run": run_id, "at": at, "kind": kind}, separators=(",", ":"))


def decode(body: str, receipt: str = "", receives: int = 1) -> Message | None:
    """Parse a message body; ``None`` for a body this world did not write."""
    try:
        data = json.loads(body)
        return Message(str(data["run"]), float(data["at"]), str(data["kind"]), receipt, receives)
    except (ValueError, KeyError, TypeError):
        return None


class WakeQueue:
    """Sends, receives and settles messages on the world's queue."""

    def __init__(self, sqs: Any, queue_name: str, max_delay: int) -> None:
        self._sqs = sqs
        self._name = queue_name
        self._url: str | None = None
        self._lock = threading.Lock()
        self.max_delay = max_delay

    @property
    def url(self) -> str:
        """The queue's URL (looked up once)."""
        if self._url is None:
            with self._lock:
                if self._url is None:
                    try:
                        self._url = str(self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"])
                    except Exception as exc:
                        raise translate(exc, f"looking up SQS queue {self._name}") from exc
        return self._url

    def send(self, run_id: str, at: float, kind: MessageKind, now: float) -> None:
        """Ask for the run to be looked at when ``at`` comes (or in ``max_delay`` seconds)."""
        delay = int(min(max(0.0, at - now), self.max_delay) + 0.999)
        try:
            self._sqs.send_message(
                QueueUrl=self.url, MessageBody=encode(run_id, at, kind), DelaySeconds=delay
            )
        except Exception as exc:
            raise translate(exc, f"queueing run {run_id}") from exc

    def receive(self, limit: int, wait: float, visibility: int | None = None) -> list[Message]:
        """Up to ``limit`` (at most 10) messages, waiting up to ``wait`` seconds for the first."""
        args: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max(1, min(10, limit)),
            "WaitTimeSeconds": int(wait),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility is not None:
            args["VisibilityTimeout"] = visibility
        try:
            raw = self._sqs.receive_message(**args).get("Messages", [])
        except Exception as exc:
            raise translate(exc, "receiving from the run queue") from exc
        messages = []
        for item in raw:
            receives = int(item.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            message = decode(item["Body"], item["ReceiptHandle"], receives)
            if message is None:
                self.delete(item["ReceiptHandle"])  # not ours: it could only loop to the DLQ
                continue
            messages.append(message)
        return messages

    def delete(self, receipt: str) -> None:
        """Settle a message: it has done its job."""
        try:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)
        except Exception as exc:
            raise translate(exc, "deleting a message from the run queue") from exc

    def extend(self, receipt: str, seconds: int) -> None:
        """Keep a message hidden for ``seconds`` more (a run it stands for is still executing)."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:
            raise translate(exc, "extending a message's visibility") from exc
