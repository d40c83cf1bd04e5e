"""Hooks in the SQLite world: live hooks in their own table, resumed without the run's lease."""

from __future__ import annotations

from durable._errors import HookConflict, HookNotFound, LeaseLost
from durable.world import (
    HookRecord,
    NewEvent,
)
from worlds.sqlite._appending import Appending
from worlds.sqlite._sql import (
    _APPEND_CHECK,
    _BITS,
    _DELETE_HOOK,
    _GET_HOOK,
    _HOOK_OWNER,
    _INSERT_EVENT,
    _INSERT_HOOK,
    _LIST_HOOKS,
    _RESUME_TARGET,
    _WAKE_NOW,
)


class Hooks(Appending):
    """Creating, resuming, disposing of and listing hooks."""

    def create_hook(self, owner: str, hook: HookRecord, event: NewEvent) -> None:
        """Register a live hook and append its ``hook_created`` event, in one transaction.

        Registering the same token again for the same run and operation (a replay) does nothing.

        Raises:
            HookConflict: another live hook holds the token; nothing was written.
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
        """
        with self._transaction(f"creating hook {hook.token!r} of run {hook.run_id}") as conn:
            existing = conn.execute(_HOOK_OWNER, (hook.token,)).fetchone()
            if existing is not None:
                if (existing[0], existing[1]) == (hook.run_id, hook.op_id):
                    return
                raise HookConflict(hook.token, existing[0])
            self._append_locked(conn, hook.run_id, owner, [event], None)
            conn.execute(
                _INSERT_HOOK,
                (
                    hook.token,
                    hook.run_id,
                    hook.op_id,
                    hook.created_at,
                    hook.timeout_at,
                    hook.schema,
                ),
            )

    def resume_hook(self, token: str, payload: bytes) -> HookRecord:
        """Deliver a payload to the hook's run, which needs no lease.

        Appends a ``hook_received`` event (the hook's ``op_id``, the token as name, ``payload``
        as data) after the run's newest; a suspended run becomes due now.

        Returns:
            The hook.

        Raises:
            HookNotFound: no live hook has this token; nothing was written.
        """
        with self._transaction(f"resuming hook {token!r}") as conn:
            row = conn.execute(_RESUME_TARGET, (token,)).fetchone()
            if row is None:
                raise HookNotFound(token)
            hook = HookRecord(*row[:6])
            status, run_no, seq = row[6], row[7], row[8] or 0
            now = self._clock()
            if hook.timed_out(now):
                raise HookNotFound(token, hook.timeout_at)
            self._check_room(hook.run_id, seq, 1)
            seq += 1
            conn.execute(
                _INSERT_EVENT,
                ((run_no << _BITS) + seq, "hook_received", hook.op_id, token, payload, now),
            )
            if status == "suspended":
                conn.execute(_WAKE_NOW, (now, seq, hook.run_id))
        return hook

    def dispose_hook(
        self,
        run_id: str,
        owner: str,
        token: str,
        event: NewEvent | None = None,
        expected_seq: int | None = None,
    ) -> bool:
        """End a hook of the run so later resumes raise ``HookNotFound``; append ``event``.

        Returns:
            False, changing nothing, if ``expected_seq`` is given and the run's log has grown
            past it (a payload may have arrived); True otherwise.

        Raises:
            LeaseLost: ``owner`` does not hold the run's lease; nothing was written.
        """
        with self._transaction(f"disposing of hook {token!r} of run {run_id}") as conn:
            checked = conn.execute(_APPEND_CHECK, (run_id, owner)).fetchone()
            if checked is None:
                raise LeaseLost(run_id)
            if expected_seq is not None and (checked[2] or 0) > expected_seq:
                return False
            conn.execute(_DELETE_HOOK, (token, run_id))
            if event is not None:
                self._append_locked(conn, run_id, owner, [event], None, checked)
            return True

    def get_hook(self, token: str) -> HookRecord | None:
        """The live hook with this token, or ``None``."""
        with self._reading(f"reading hook {token}") as conn:
            row = conn.execute(_GET_HOOK, (token,)).fetchone()
        return None if row is None else HookRecord(*row)

    def list_hooks(self, run_id: str | None = None) -> list[HookRecord]:
        """Live hooks, oldest first, optionally of one run."""
        params = () if run_id is None else (run_id,)
        with self._reading("listing hooks") as conn:
            rows = conn.execute(_LIST_HOOKS[run_id is not None], params).fetchall()
        return [HookRecord(*row) for row in rows]
