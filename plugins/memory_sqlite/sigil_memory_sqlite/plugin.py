"""Sigil hook implementations of the SQLite memory backend.

Kept light: nothing heavy (numpy, sqlite-vec, the store) is imported until a hook runs, so
``sigil --help`` stays fast with this plugin installed.
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl
def sigil_register_embedders(register: Any) -> None:
    """The dependency-free ``hashing`` embedder (``minilm`` comes from ``embedder_minilm``)."""
    from .embedders import builtin_embedders

    for embedder in builtin_embedders():
        register(embedder)


@hookimpl
def sigil_register_memory_backends(register: Any) -> None:
    """``memory.backend: sqlite`` (the default): one SQLite file per host."""
    from .backend import SqliteBackend

    register(SqliteBackend())


@hookimpl
def sigil_register_commands(cli: Any) -> None:
    """``sigil memory add|search|list|show|forget|stats|export|import|reindex|migrate``."""
    from sigil_core import attach_memory_commands

    attach_memory_commands(cli)  # the core's commands, shared by every memory backend


@hookimpl
def sigil_retrieve(run: Any, task: str) -> Any:
    """Hybrid retrieval (vector + full-text, fused by rank), LLM-filtered to the best 10."""
    from .retrieval import retrieve

    return retrieve(run, task)


@hookimpl
def sigil_extract(run: Any, task: str, result: Any, output: Any) -> Any:
    """Extract typed facts from the finished run and store them with consolidation."""
    from .extraction import extract

    return extract(run, task, result, output)
