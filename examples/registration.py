"""Register a user: create the account, then the profile and a welcome email at once, wait up to
24 hours for the email address to be verified, and activate the account. If nobody verifies it
in time, a saga undoes what was done: it deletes the profile, then the account.

Run it (it uses the default world, ``sqlite:///.durable/durable.db``)::

    python examples/registration.py        # the unverified registration expires after 3 s
    python examples/registration.py 10s    # ... after 10 s

It registers two users. For the first, the script plays the user clicking the link in the
welcome email: after a moment it resumes the run's hook (``email-verified:<user id>``) with
``{"verified": true}`` and the account is activated. The second registration is given the short
verification window from the command line and nobody verifies it: the wait raises
``HookTimeout``, the saga deletes the profile and then the account (each undo is a step,
recorded once), and the workflow reports the registration as expired.

To verify an address yourself, from any process, while a registration waits::

    python examples/registration.py --manual     # waits up to 24 h; prints its token
    durable hooks                                # in another terminal: the waiting hooks
    durable resume email-verified:<user id> '{"verified": true}'

The run may sleep for the whole day: kill the script and ``durable worker examples.registration``
picks the run up where it stopped, and the resume reaches it wherever it runs.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time

from pydantic import BaseModel

import durable
from durable import HookNotFound, HookTimeout, step, workflow


class FakeServices:
    """In-memory stand-ins for the user, profile and notification services."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accounts: dict[str, str] = {}
        """User id -> ``"pending"`` or ``"active"``."""
        self.profiles: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        """Every call, in order: what the tests check."""

    def call(self, line: str) -> None:
        with self.lock:
            self.calls.append(line)
        # One write per line: the profile and email branches run in parallel threads.
        sys.stdout.write(f"  {line}\n")

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.profiles.clear()
            self.calls.clear()


SERVICES = FakeServices()


def account_id(username: str) -> str:
    """The user service keys accounts by username (usernames are unique)."""
    return f"user-{username}"


def verification_token(user_id: str) -> str:
    """The hook token the verification link carries; the web app resumes the run with it."""
    return f"email-verified:{user_id}"


class Verification(BaseModel):
    """What the verification page sends: ``{"verified": true}``."""

    verified: bool


class VerificationDeclined(Exception):
    """The user said the registration was not theirs."""


@step
def create_account(username: str, email: str) -> str:
    user_id = account_id(username)
    SERVICES.accounts[user_id] = "pending"
    SERVICES.call(f"create_account {user_id} <{email}>")
    return user_id


@step
def delete_account(user_id: str) -> None:
    SERVICES.accounts.pop(user_id, None)  # undos tolerate "already gone"
    SERVICES.call(f"delete_account {user_id}")


@step
def create_profile(user_id: str, profile: dict[str, str]) -> None:
    SERVICES.profiles[user_id] = profile
    SERVICES.call(f"create_profile {user_id}")


@step
def delete_profile(user_id: str) -> None:
    SERVICES.profiles.pop(user_id, None)
    SERVICES.call(f"delete_profile {user_id}")


@step
def send_email(user_id: str, email: str, template: str, link: str | None = None) -> str:
    # The key is the same on every attempt and replay: the mail API sends at most once.
    key = durable.step_info().idempotency_key
    extra = f" with link {link}" if link else ""
    SERVICES.call(f"send_email {template} to <{email}>{extra} (idempotency key {key})")
    return template


@step
def activate_account(user_id: str) -> str:
    SERVICES.accounts[user_id] = "active"
    SERVICES.call(f"activate_account {user_id}")
    return "active"


def _create_profile(saga: durable.Saga, user_id: str, profile: dict[str, str]) -> None:
    create_profile(user_id, profile)
    saga.add(delete_profile, user_id)


@workflow
def register(
    username: str,
    email: str,
    profile: dict[str, str] | None = None,
    verify_within: str = "24h",
) -> dict[str, str]:
    """Create, wait for the email address to be verified, activate; undo if it never is."""
    user_id = create_account(username, email)
    try:
        with durable.Saga() as saga:
            saga.add(delete_account, user_id)
            # Created before the email goes out, so an early click is kept, not lost.
            hook = durable.create_hook(
                token=verification_token(user_id), timeout=verify_within, model=Verification
            )
            link = f"https://example.com/verify?token={hook.token}"
            durable.parallel(
                lambda: _create_profile(saga, user_id, profile or {}),
                lambda: send_email(user_id, email, "welcome", link),
            )
            verification: Verification = hook.wait()  # suspends the run; no process waits
            if not verification.verified:
                raise VerificationDeclined(user_id)
            activate_account(user_id)
    except HookTimeout:  # the saga has deleted the profile and the account by now
        return {"user_id": user_id, "status": "expired"}
    except VerificationDeclined:
        return {"user_id": user_id, "status": "declined"}
    send_email(user_id, email, "account-activated")
    return {"user_id": user_id, "status": "active"}


def click_verification_link(token: str, verified: bool = True, timeout: float = 30.0) -> str:
    """What the verification page does: resume the run waiting on ``token``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return durable.resume_hook(token, {"verified": verified})
        except HookNotFound:  # the run has not created its hook yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: list[str]) -> int:
    manual = "--manual" in argv
    args = [a for a in argv if a != "--manual"]
    short = args[0] if args else "3s"
    suffix = secrets.token_hex(2)  # a fresh username (and token) on every run of the script

    ada = f"ada-{suffix}"
    token = verification_token(account_id(ada))
    say(f"registering {ada}; the run will wait for hook {token}")
    run = register.start(ada, f"{ada}@example.com", {"name": "Ada Lovelace"})
    if manual:
        say(f"""verify it from another terminal: durable resume {token} '{{"verified": true}}'""")
    else:
        time.sleep(1.0)  # a moment for the user to read the email
        click_verification_link(token)
        say(f"resumed hook {token}")
    say(f"registration of {ada} (run {run.id}): {run.result()}")
    if manual:
        return 0

    bob = f"bob-{suffix}"
    say(f"registering {bob}; nobody verifies it within {short}")
    run = register.start(bob, f"{bob}@example.com", {"name": "Bob"}, verify_within=short)
    say(f"registration of {bob} (run {run.id}): {run.result()}")
    say("see the runs: durable runs --workflow register; durable inspect <run id>")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
