"""World backends for durable: ``memory``, ``sqlite`` (the embedded default) and ``aws``."""
