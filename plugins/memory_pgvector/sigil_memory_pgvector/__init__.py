"""Sigil memory on PostgreSQL + pgvector: one memory shared by every host that runs Sigil."""

__version__ = "0.1.0"
