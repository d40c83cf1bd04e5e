"""Sign a user up: create the account, send a welcome email, wait, then follow up.

Run it (it uses the default world, ``sqlite:///.durable/durable.db``)::

    python examples/signup.py ada@example.com

The follow-up normally waits 7 days; the script passes 10 seconds so you can watch it finish.
The wait suspends the run (waits over 5 seconds hold no thread): stop the script during it
(Ctrl-C, or ``kill -9``) and run ``durable worker examples.signup``: the run resumes when it is
due, without creating the account or sending the welcome email again.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass

import durable
from durable import RetryPolicy, step, workflow


@dataclass
class User:
    id: str
    email: str


@step
def create_user(email: str) -> User:
    user_id = f"user-{zlib.crc32(email.encode()) % 10_000:04d}"
    print(f"  created {user_id} for {email}")
    return User(user_id, email)


@step(retry=RetryPolicy(max_attempts=5, initial_delay=2.0))
def send_email(user: User, template: str) -> str:
    key = durable.step_info().idempotency_key  # pass this to the mail API to avoid duplicates
    print(f"  sent {template!r} to {user.email} (idempotency key {key})")
    return template


@workflow
def signup(email: str, follow_up_after: str = "7 days") -> dict[str, str]:
    """Create the user, welcome them, and check back after a while."""
    user = create_user(email)
    send_email(user, "welcome")
    durable.sleep(follow_up_after)
    send_email(user, "how-is-it-going")
    return {"user": user.id, "status": "onboarded"}


if __name__ == "__main__":
    email = sys.argv[1] if len(sys.argv) > 1 else "ada@example.com"
    # Said before starting: the run's steps print from the worker thread as soon as it starts.
    print(f"signing up {email}; the follow-up is due 10 seconds after the welcome email")
    run = signup.start(email, follow_up_after="10s")
    try:
        print(f"run {run.id}: {run.result()}")
    except KeyboardInterrupt:
        print(f"\nstopped; run {run.id} is {run.status}: `durable worker examples.signup` "
              "finishes it", file=sys.stderr)
        sys.exit(130)
