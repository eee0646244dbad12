"""Sigil hook implementations of the PostgreSQL + pgvector memory backend.

Kept light: psycopg, pgvector and numpy are imported when a hook runs, not when ``sigil`` starts.
The retrieve and extract phases are the core's (``builtin.memory``, the same for every backend),
run on this backend when ``memory.backend`` is ``pgvector``.
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_memory_backends(register: Any) -> None:
    """``memory.backend: pgvector``: PostgreSQL (``memory.dsn`` or ``SIGIL_MEMORY_DSN``)."""
    from .backend import PgBackend

    register(PgBackend())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """``sigil memory migrate`` (the core's backend-independent memory commands)."""
    from sigil_core.memory_cli import attach

    attach(cli)
