"""Sigil memory backend on one SQLite file: sqlite-vec + FTS5 hybrid retrieval, extraction
with consolidation, and the ``sigil memory`` commands. Entry point: :mod:`.plugin`."""

__version__ = "0.1.0"
