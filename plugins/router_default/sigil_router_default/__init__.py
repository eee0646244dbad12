"""sigil-router-default: routing with a zero-token fast path, intent handlers and agents."""

__version__ = "0.1.0"
