"""Sigil hook implementations of the PostgreSQL + pgvector memory backend.

Kept light: psycopg, pgvector and numpy are imported when a hook runs, not when ``sigil`` starts.
The retrieve and extract phases are the core's (``builtin.memory``, the same for every backend),
run on this backend when ``memory.backend`` is ``pgvector``.
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_plugin_status(sections: dict[str, Any]) -> str | None:
    """Whether runs use this backend, and where (host only: never the password)."""
    import os

    found = sections.get("memory")
    memory: dict[str, Any] = found if isinstance(found, dict) else {}
    backend = os.environ.get("SIGIL_MEMORY_BACKEND") or memory.get("backend") or "sqlite"
    if backend != "pgvector":
        return f"idle: memory.backend is {backend!r}, not 'pgvector'"
    dsn = os.environ.get("SIGIL_MEMORY_DSN") or memory.get("dsn")
    if not dsn:
        return "not configured: memory.backend is pgvector but no memory.dsn / SIGIL_MEMORY_DSN"
    from .dsn import describe

    return f"memory on {describe(str(dsn))[0]} schema {memory.get('schema') or 'sigil_memory'}"


class PgBackend:
    """The backend as registered: its store (psycopg, pgvector, numpy) is imported when a run
    opens it, not when every ``sigil`` command registers the backends (~120 ms)."""

    name = "pgvector"
    description = "PostgreSQL + pgvector, shared by every host (memory.dsn / SIGIL_MEMORY_DSN)"

    async def open(self, config: Any, embedder: Any, *, check_embedder: bool = True,
                   location: str | None = None) -> Any:
        from sigil_core.memory import MemorySettings

        from .backend import PgStore
        from .dsn import resolve_dsn

        settings = MemorySettings.from_config(config)
        return await PgStore.connect(resolve_dsn(settings, location), settings.schema, embedder,
                                     check_embedder=check_embedder)


@hookimpl
def sigil_register_memory_backends(register: Any) -> None:
    """``memory.backend: pgvector``: PostgreSQL (``memory.dsn`` or ``SIGIL_MEMORY_DSN``)."""
    register(PgBackend())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """``sigil memory ...`` (the core's commands, shared by every memory backend)."""
    from sigil_core import attach_memory_commands

    attach_memory_commands(cli)
