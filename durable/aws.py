"""The AWS Lambda entry point: ``durable.aws.handler`` executes runs named by SQS messages.

``durable deploy`` wires a function to the world's queue with this handler. Each invocation
gets a batch of messages; for each one the run it names is leased if it is runnable and
executed with its steps inline, concurrently with the batch's other runs. Before the function's
time runs out, runs still executing stop at their next durable point and are handed back
(pending, with a message), so another invocation resumes them. Messages that could not be
handled are reported as partial batch failures; SQS retries them and, after the queue's
``maxReceiveCount``, moves them to the dead-letter queue (``durable dlq`` shows them).

Environment:

* ``DURABLE_MODULES``: comma-separated modules that define the workflows (imported once).
* ``DURABLE_WORLD``: the world URL (``aws://?prefix=NAME``, written by ``durable deploy``).
* ``DURABLE_TIME_MARGIN``: seconds kept in reserve before the function's timeout (default 30;
  ``durable deploy`` sets 30, or a quarter of a timeout under two minutes).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from durable._decorators import registered_workflows
from durable._runtime import Runtime, RuntimeOptions, report_ended
from durable.world import RunRecord, open_world

log = logging.getLogger("durable.aws")

_RETRY_SOON = 5
"""Seconds before a message this function cannot act on is visible again (as workers do)."""

__all__ = ["LambdaContext", "handler", "make_handler"]


class LambdaContext(Protocol):
    """The part of Lambda's context object the handler uses."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation is stopped."""
        ...


class _Handler:
    """A runtime built once per container and reused by every invocation."""

    def __init__(self, runtime: Runtime, margin: float, modules: list[str] | None = None) -> None:
        self.runtime = runtime
        self.margin = margin
        self.modules = list(modules or [])
        """The modules imported for their workflows (named in warnings)."""

    def __call__(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        from worlds.aws._queue import decode

        # Measured before anything else: about the function's whole timeout on a cold start.
        given = context.get_remaining_time_in_millis() / 1000 if context else None
        world = self.runtime.world
        take = getattr(world, "take_message", None)
        if take is None:
            raise TypeError(f"durable.aws.handler needs the aws world, not {world.url}")
        names = set(registered_workflows())
        ttl = self.runtime.options.lease_ttl
        failures: list[str] = []
        leased: list[tuple[str, RunRecord]] = []
        for record in event.get("Records", []):
            message_id = str(record.get("messageId", ""))
            attributes = record.get("attributes", {})
            message = decode(
                str(record.get("body", "")),
                str(record.get("receiptHandle", "")),
                int(attributes.get("ApproximateReceiveCount", "1")),
            )
            if message is None:
                log.warning("message %s is not a durable message; dropped", message_id)
                continue
            try:
                run, done = take(message, self.runtime.owner, ttl, names)
            except Exception as exc:
                log.warning("message %s (run %s): %s", message_id, message.run_id, exc)
                failures.append(message_id)
                continue
            if not done:
                log.warning(
                    "run %s: its workflow is defined in none of the modules this function "
                    "imports (%s); left for a function or worker that imports it",
                    message.run_id, ", ".join(self.modules) or "none: set DURABLE_MODULES",
                )
                self._retry_soon(world, message.receipt)
                failures.append(message_id)
            elif run is not None:
                leased.append((message_id, run))
        failures.extend(self._execute(leased, context, given))
        return {"batchItemFailures": [{"itemIdentifier": f} for f in failures]}

    @staticmethod
    def _retry_soon(world: Any, receipt: str) -> None:
        # A failed batch item stays hidden for the queue's visibility timeout (15 minutes):
        # make it visible again in seconds, for a function or worker that has the workflow.
        try:
            world.queue.extend(receipt, _RETRY_SOON)
        except Exception as exc:
            log.warning("could not make the message visible again soon: %s", exc)

    def _execute(
        self,
        leased: list[tuple[str, RunRecord]],
        context: LambdaContext | None,
        given: float | None = None,
    ) -> list[str]:
        if not leased:
            return []
        runtime = self.runtime
        remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
        if remaining <= self.margin:
            # No time to execute anything safely: hand the runs back for another invocation.
            self._warn_unexecuted(leased, remaining, given)
            for _, run in leased:
                runtime.world.release(run.id, runtime.owner)
            return []
        stop = threading.Event()
        # Hand runs back before the function is stopped, and keep their leases alive until then.
        deadline = threading.Timer(max(0.0, remaining - self.margin), self._hand_back, [leased])
        renewer = threading.Thread(target=self._renew, args=(stop,), daemon=True)
        deadline.start()
        renewer.start()
        failures: list[str] = []
        try:
            with ThreadPoolExecutor(len(leased)) as pool:
                outcomes = list(pool.map(lambda item: runtime.execute_now(item[1]), leased))
            for (message_id, run), outcome in zip(leased, outcomes, strict=True):
                report_ended(run.id, run.workflow_name, outcome)
                if outcome.status == "error":
                    log.warning("run %s: %s", run.id, outcome.error)
                    failures.append(message_id)
        finally:
            deadline.cancel()
            stop.set()
            renewer.join()
        return failures

    def _warn_unexecuted(
        self, leased: list[tuple[str, RunRecord]], remaining: float, given: float | None
    ) -> None:
        runs = ", ".join(run.id for _, run in leased)
        if given is not None and given <= self.margin:
            # Every invocation will do the same: say loudly that none can execute anything.
            log.error(
                "DURABLE_TIME_MARGIN (%g s) is not shorter than the function's whole time "
                "(%.1f s left when invoked), so it can never execute a run: run(s) %s handed "
                "back unexecuted, again and again. Lower DURABLE_TIME_MARGIN or raise the "
                "timeout (`durable deploy --timeout` sets a margin that fits)",
                self.margin, given, runs,
            )
            return
        log.warning(
            "%.1f s left of this invocation, within DURABLE_TIME_MARGIN (%g s): run(s) %s "
            "handed back unexecuted for another invocation",
            remaining, self.margin, runs,
        )

    def _hand_back(self, leased: list[tuple[str, RunRecord]]) -> None:
        log.warning(
            "DURABLE_TIME_MARGIN (%g s) before the function's timeout: handing back run(s) %s "
            "at their next durable point; another invocation resumes them",
            self.margin, ", ".join(run.id for _, run in leased),
        )
        for _, run in leased:
            self.runtime.hand_back(run.id)

    def _renew(self, stop: threading.Event) -> None:
        interval = self.runtime.options.lease_ttl / 3
        while not stop.wait(interval):
            try:
                self.runtime.renew_leases()
            except Exception as exc:
                log.warning("renewing leases: %s", exc)


def make_handler(
    world: str | None = None,
    modules: list[str] | None = None,
    *,
    margin: float | None = None,
    lease_ttl: float = 60.0,
) -> _Handler:
    """Build a handler: import ``modules`` and open ``world`` (defaults from the environment)."""
    names = modules if modules is not None else _split(os.environ.get("DURABLE_MODULES", ""))
    for name in names:
        importlib.import_module(name)
    url = world or os.environ.get("DURABLE_WORLD", "aws://")
    options = RuntimeOptions(worker=False, lease_ttl=lease_ttl, inline_wait_limit=5.0)
    if margin is None:
        margin = float(os.environ.get("DURABLE_TIME_MARGIN", "30"))
    return _Handler(Runtime(open_world(url), options), margin, names)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_default: _Handler | None = None
_default_lock = threading.Lock()


def handler(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """The Lambda function's handler (``durable.aws.handler``)."""
    global _default
    with _default_lock:
        if _default is None:
            started = time.monotonic()
            _default = make_handler()
            log.info("durable handler ready in %.2f s", time.monotonic() - started)
    return _default(event, context)
