"""The in-memory world: one process, nothing persisted. Used by tests and ``durable.testing``."""

from worlds.memory._world import MemoryWorld

__all__ = ["MemoryWorld"]
