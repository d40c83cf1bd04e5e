"""Handlers for the DAG examples: the math tasks, the A -> (B1, B2, B3) -> C tasks and
the registration services of ``examples/registration.yaml``.

Import this module before running ``examples/dag_math.json``, ``examples/dag_fanout.yaml`` or
``examples/registration.yaml``
(``durable dag run examples/dag_math.json -m examples.dag_handlers --wait``).
"""

from __future__ import annotations

from typing import Any

import durable.dag


@durable.dag.handler("add")
def add(a: float, b: float) -> float:
    return a + b


@durable.dag.handler("subtract")
def subtract(a: float, b: float) -> float:
    return a - b


@durable.dag.handler("multiply")
def multiply(a: float, b: float) -> float:
    return a * b


@durable.dag.handler("divide")
def divide(a: float, b: float) -> float:
    return a / b


@durable.dag.handler("task")
def task(name: str, received: Any = None) -> dict[str, Any]:
    """One task of the fan-out example: reports its name and what it received."""
    return {"task": name, "received": received}


# --- examples/registration.yaml: stand-ins for the user, profile and notification services ---

REGISTRATION_CALLS: list[str] = []
"""Every registration service call, in order (what the tests check)."""


@durable.dag.handler("create_account")
def create_account(user_id: str, email: str) -> dict[str, str]:
    REGISTRATION_CALLS.append(f"create_account {user_id}")
    return {"user_id": user_id, "email": email, "status": "pending"}


@durable.dag.handler("create_profile")
def create_profile(user_id: str, profile: Any = None) -> dict[str, Any]:
    REGISTRATION_CALLS.append(f"create_profile {user_id}")
    return {"user_id": user_id, "profile": profile or {}}


@durable.dag.handler("send_email")
def send_email(to: str, template: str) -> dict[str, str]:
    REGISTRATION_CALLS.append(f"send_email {template} {to}")
    return {"to": to, "template": template}


@durable.dag.handler("activate_account")
def activate_account(user_id: str) -> dict[str, str]:
    REGISTRATION_CALLS.append(f"activate_account {user_id}")
    return {"user_id": user_id, "status": "active"}


@durable.dag.handler("is_null")
def is_null(value: Any = None) -> bool:
    """True if ``value`` is null: the DAG layer's ``when`` has no negation, so this turns
    "the verification never came" into a condition."""
    return value is None


@durable.dag.handler("delete_profile")
def delete_profile(user_id: str) -> dict[str, str]:
    REGISTRATION_CALLS.append(f"delete_profile {user_id}")
    return {"user_id": user_id, "profile": "deleted"}


@durable.dag.handler("delete_account")
def delete_account(user_id: str) -> dict[str, str]:
    REGISTRATION_CALLS.append(f"delete_account {user_id}")
    return {"user_id": user_id, "status": "expired"}
