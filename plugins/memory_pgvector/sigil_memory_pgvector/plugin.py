"""Sigil hook implementations of the PostgreSQL + pgvector memory backend.

Kept light: psycopg, pgvector and numpy are imported when a hook runs, not when ``sigil`` starts.
The hooks answer only when ``memory.backend`` is ``pgvector``.
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl

BACKEND = "pgvector"


@hookimpl
def sigil_register_memory_backends(register: Any) -> None:
    """``memory.backend: pgvector``: PostgreSQL (``memory.dsn`` or ``SIGIL_MEMORY_DSN``)."""
    from .backend import PgBackend

    register(PgBackend())


@hookimpl
def sigil_retrieve(run: Any, task: str) -> Any:
    """Hybrid retrieval (HNSW cosine + tsvector, fused by rank), LLM-filtered to the best 10."""
    from sigil_core.memory.phases import retrieve

    return retrieve(run, task, BACKEND)


@hookimpl
def sigil_extract(run: Any, task: str, result: Any, output: Any) -> Any:
    """Extract typed facts from the finished run and store them with consolidation."""
    from sigil_core.memory.phases import extract

    return extract(run, task, result, output, BACKEND)
