"""The extract phase on this backend: :func:`sigil_core.memory.phases.extract` (typed facts
from the finished run, stored with consolidation)."""

from __future__ import annotations

from typing import Any

from sigil_core import ExtractionResult
from sigil_core.memory.phases import active_settings
from sigil_core.memory.phases import extract as shared_extract

from .retrieval import BACKEND, announce_driver


async def extract(run: Any, task: str, result: Any, output: Any) -> ExtractionResult | None:
    if active_settings(run, BACKEND) is None:
        return None
    announce_driver(run, "extract_memories")
    return await shared_extract(run, task, result, output, BACKEND)
