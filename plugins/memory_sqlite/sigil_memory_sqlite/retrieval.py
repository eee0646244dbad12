"""The retrieve phase on this backend: :func:`sigil_core.memory.phases.retrieve` (hybrid search,
LLM filtering, categories, the spec's metadata), the SQLite driver named in verbose output."""

from __future__ import annotations

from typing import Any

from sigil_core import MemoryContext
from sigil_core.memory.phases import active_settings
from sigil_core.memory.phases import retrieve as shared_retrieve

BACKEND = "sqlite"
_named_driver = False


def announce_driver(run: Any, operation: str) -> None:
    """Name the SQLite driver once per process in verbose output."""
    global _named_driver
    if _named_driver or not getattr(getattr(run, "ctx", None), "verbose", False):
        return
    _named_driver = True
    from .db import driver_description

    run.event("info", "memory", operation, f"memory backend SQLite driver: {driver_description()}")


async def retrieve(run: Any, task: str) -> MemoryContext | None:
    if active_settings(run, BACKEND) is None:
        return None
    announce_driver(run, "retrieve_context")
    return await shared_retrieve(run, task, BACKEND)
