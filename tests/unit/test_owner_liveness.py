"""A lease owner on this host is judged dead by its pid only within one PID namespace."""

from __future__ import annotations

import os
import socket

from durable.world import make_owner_id, owner_is_dead
from tests.exited import exited_pid


def test_an_exited_process_of_this_host_and_namespace_is_dead():
    host = make_owner_id().partition(":")[0]
    assert owner_is_dead(f"{host}:{exited_pid()}:x")
    assert not owner_is_dead(f"{host}:{os.getpid()}:x")


def test_a_process_of_another_pid_namespace_with_the_same_hostname_is_not_judged_dead():
    # Containers sharing a hostname (host networking) and a database number their own pids:
    # a pid that does not exist here may be a live worker there.
    here = make_owner_id().partition(":")[0]
    elsewhere = f"{socket.gethostname()}/pidns1:{exited_pid()}:x"
    assert elsewhere.partition(":")[0] != here
    assert not owner_is_dead(elsewhere)


def test_the_owner_id_names_the_pid_namespace_where_there_is_one():
    host = make_owner_id().partition(":")[0]
    if os.path.exists("/proc/self/ns/pid"):
        assert host.startswith(socket.gethostname() + "/pidns")
    else:
        assert host == socket.gethostname()
