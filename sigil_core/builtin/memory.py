"""Builtin memory phases: retrieve and extract through the configured memory backend.

Any plugin that registers a backend (``sigil_register_memory_backends``, the store protocol of
:mod:`sigil_core.memory`) gets the retrieve and extract phases from here, the same for every
backend: ``memory.backend`` picks the backend, so several backends can be installed side by
side without a ``plugins.use`` choice. With no backend registered both return None (skipped).
"""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


def _backend(run: Any) -> str | None:
    """The configured backend; None (phase skipped) when none is registered, or when the
    default one is not installed and none was named (a named one that is missing is an
    error, raised by the phase)."""
    backends = run.registry("memory_backends")
    if not backends:
        return None
    import os

    from sigil_core.memory import MemorySettings

    backend = MemorySettings.from_config(run.config).backend
    named = "backend" in (run.config.section("memory") or {}) or os.environ.get(
        "SIGIL_MEMORY_BACKEND")
    return backend if backend in backends or named else None


@hookimpl(trylast=True)
def sigil_retrieve(run: Any, task: str) -> Any:
    backend = _backend(run)
    if backend is None:
        return None
    from sigil_core.memory.phases import retrieve

    return retrieve(run, task, backend)


@hookimpl(trylast=True)
def sigil_extract(run: Any, task: str, result: Any, output: Any) -> Any:
    backend = _backend(run)
    if backend is None:
        return None
    from sigil_core.memory.phases import extract

    return extract(run, task, result, output, backend)


@hookimpl
def sigil_config_sections() -> list[str]:
    """The config sections this plugin reads."""
    return ["memory"]
