"""durable: durable execution for plain Python functions.

Decorate functions with :func:`workflow` and :func:`step`; every step's result is recorded in an
event log kept by a *world* (SQLite by default), so runs survive crashes, sleep for days and
resume where they left off.
"""

from durable._api import map, now, parallel, random, sleep, sleep_until, step_info, uuid4
from durable._client import configure, get_run, get_runtime
from durable._context import StepInfo
from durable._decorators import Step, Workflow, step, workflow
from durable._engine import StepCommand
from durable._errors import (
    CancelRequested,
    ConfigurationError,
    DurableError,
    FatalError,
    HookConflict,
    HookNotFound,
    HookTimeout,
    InvalidDuration,
    InvalidEventLog,
    LeaseLost,
    NonDeterminismError,
    PayloadInvalid,
    RetryableError,
    RunNotFound,
    SerializationError,
    StepFailed,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowTimedOut,
    WorldError,
)
from durable._hooks import Hook, create_hook, resume_hook, resume_hook_async
from durable._options import RetryPolicy
from durable._patches import deprecate_patch, patched
from durable._replay import ReplayResult, replay
from durable._run import Run
from durable._saga import CompensationFailed, Saga
from durable._streams import StreamClosed, StreamWriter, stream
from durable.world import Event, RunStatus

__all__ = [
    "CancelRequested",
    "CompensationFailed",
    "ConfigurationError",
    "DurableError",
    "Event",
    "FatalError",
    "Hook",
    "HookConflict",
    "HookNotFound",
    "HookTimeout",
    "InvalidDuration",
    "InvalidEventLog",
    "LeaseLost",
    "NonDeterminismError",
    "PayloadInvalid",
    "ReplayResult",
    "RetryPolicy",
    "RetryableError",
    "Run",
    "RunNotFound",
    "RunStatus",
    "Saga",
    "SerializationError",
    "Step",
    "StepCommand",
    "StepFailed",
    "StepInfo",
    "StreamClosed",
    "StreamWriter",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowTimedOut",
    "WorldError",
    "configure",
    "create_hook",
    "deprecate_patch",
    "get_run",
    "get_runtime",
    "map",
    "now",
    "parallel",
    "patched",
    "random",
    "replay",
    "resume_hook",
    "resume_hook_async",
    "sleep",
    "sleep_until",
    "step",
    "step_info",
    "stream",
    "uuid4",
    "workflow",
]
