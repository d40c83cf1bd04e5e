"""Changing a workflow's code while runs of it are in flight: ``patched`` and ``deprecate_patch``.

A patch marker is a recorded value at the point where the code changed. A run that records it
takes the new path there, on every replay; a run whose log holds other operations at that point
or further on in the branch had passed it under the old code, and keeps the old path.
"""

from __future__ import annotations

from durable._context import current_frame
from durable._engine import PATCH_MARKER as MARKER_PREFIX
from durable._errors import ConfigurationError
from durable.world import Event


def patched(patch_id: str) -> bool:
    """Whether the run takes the code path added under ``patch_id``, at this point of its code.

    Use it to change a workflow whose runs may be in flight (asleep, waiting on a hook)::

        if durable.patched("sms-instead-of-email"):
            send_sms(user)      # the new code
        else:
            send_email(user)    # what the runs recorded before the change do

    True where the run has not been before (a new run, or one that reaches this point for the
    first time after the change): the choice is recorded, and the same on every replay. False
    where the run's log already holds operations at this point or further on in its branch (it
    passed it under the old code), so it replays as it was recorded. Each call decides at its
    own point: call it once, early, and keep the answer if the old and the new path must not
    mix within a run.
    Outside a workflow, and inside a step (steps are not replayed), it is True.

    Once no run that passed the point without the patch is left, replace the call with
    :func:`deprecate_patch` and drop the old path; once no run recorded with the patch is left
    either, remove that call too.
    """
    name = _marker(patch_id)
    frame = current_frame.get()
    if frame is None:
        return True
    ctx, branch = frame.ctx, frame.branch
    if not is_marker(ctx.upcoming(branch), patch_id) and ctx.passed(branch):
        return False  # the log holds the old code's operations here or further on
    ctx.value(branch.next_op(), name, lambda: True)  # recorded with the next durable write
    return True


def deprecate_patch(patch_id: str) -> None:
    """Keep runs that recorded ``patch_id`` replaying once its ``patched()`` call is gone.

    Put it where the ``patched(patch_id)`` call was, with only the new path after it: a run that
    recorded the patch there replays past its marker; any other run records nothing here.
    """
    name = _marker(patch_id)
    frame = current_frame.get()
    if frame is None:
        return
    ctx, branch = frame.ctx, frame.branch
    if is_marker(ctx.upcoming(branch), patch_id):
        ctx.value(branch.next_op(), name, lambda: True)


def is_marker(event: Event | None, patch_id: str | None = None) -> bool:
    """Whether ``event`` is a patch marker (``patch_id``'s, if given)."""
    return (
        event is not None
        and event.kind == "value_recorded"
        and event.name is not None
        and event.name.startswith(MARKER_PREFIX)
        and (patch_id is None or event.name == MARKER_PREFIX + patch_id)
    )


def _marker(patch_id: str) -> str:
    if not isinstance(patch_id, str) or not patch_id.strip():
        raise ConfigurationError(
            f"a patch id must be a non-empty string naming the change, e.g. "
            f'durable.patched("sms-instead-of-email"); got {patch_id!r}'
        )
    return MARKER_PREFIX + patch_id
