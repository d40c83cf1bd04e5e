"""The SQLite world: runs and event logs in one local file, shared by processes on one host.

Importing this package registers the ``sqlite`` URL scheme, so ``open_world("sqlite:///x.db")``
and ``DURABLE_WORLD=sqlite:///x.db`` build a :class:`SqliteWorld`.
"""

from durable.world import register_world
from worlds.sqlite._world import SqliteWorld

__all__ = ["SqliteWorld"]

register_world("sqlite", SqliteWorld)
