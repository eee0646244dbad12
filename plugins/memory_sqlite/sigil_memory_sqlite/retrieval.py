"""The retrieve phase: hybrid search (k=20), LLM filtering to 10 when more come back,
relevant categories loaded, the spec's metadata on the ``retrieve_context`` completion event."""

from __future__ import annotations

import asyncio
from typing import Any

from sigil_core.model import MemoryContext

from .settings import MemorySettings, open_store

FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "indices": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
    "required": ["indices"],
}

_named_driver = False


def announce_driver(run: Any, operation: str) -> None:
    """Name the SQLite driver once per process in verbose output."""
    global _named_driver
    if _named_driver or not getattr(getattr(run, "ctx", None), "verbose", False):
        return
    _named_driver = True
    from .db import driver_description

    run.event("info", "memory", operation, f"memory backend SQLite driver: {driver_description()}")


def filter_prompt(task: str, memories: list[str], keep: int) -> str:
    lines = "\n".join(f"[{i}] {m}" for i, m in enumerate(memories))
    return (f"Select the {keep} most relevant memories for this task.\n\nTask: {task}\n\n"
            f"Memories:\n{lines}\n\nReturn JSON {{\"indices\": [...]}} with the bracketed "
            f"numbers of the {keep} most relevant memories, most relevant first.")


def pick(indices: Any, n: int, keep: int) -> list[int]:
    chosen: list[int] = []
    for i in indices if isinstance(indices, list) else []:
        if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n and i not in chosen:
            chosen.append(i)
        if len(chosen) == keep:
            break
    return chosen


async def retrieve(run: Any, task: str) -> MemoryContext | None:
    settings = MemorySettings.from_config(run.config)
    if not settings.enabled:
        return None
    announce_driver(run, "retrieve_context")
    embedders = run.registry("embedders")

    def search() -> tuple[list[Any], list[str], dict[str, Any]]:
        store = open_store(run.config, embedders)
        try:
            hits = store.search(task, k=settings.k, min_similarity=settings.min_similarity)
            info = {"embedder": store.embedder.name,
                    "vector_hits": sum(1 for h in hits if h.vector_rank is not None),
                    "text_hits": sum(1 for h in hits if h.text_rank is not None)}
            return hits, store.relevant_categories(task, hits), info
        finally:
            store.close()

    hits, categories, info = await asyncio.to_thread(search)
    items = [h.item for h in hits]
    filtered_by_llm = False
    if len(items) > settings.filter_to:
        contents = [i.content for i in items]
        result = await run.llm.generate(
            filter_prompt(task, contents, settings.filter_to),
            schema=FILTER_SCHEMA,
            purpose="memory_filter",
            component="memory",
            hints={"task": task, "memories": contents, "limit": settings.filter_to},
        )
        value = result.value if isinstance(result.value, dict) else {}
        chosen = pick(value.get("indices"), len(items), settings.filter_to)
        # An unusable answer keeps the fused ranking rather than dropping memory altogether.
        items = [items[i] for i in chosen] if chosen else items[: settings.filter_to]
        filtered_by_llm = bool(chosen)
    metadata = {
        "retrieval_method": "hybrid",
        "rag_results": len(hits),
        "filtered_results": len(items),
        "categories_loaded": len(categories),
    }
    run.annotate(**metadata, llm_filtered=filtered_by_llm, **info)
    return MemoryContext(items=items, categories=categories,
                         metadata={**metadata, "llm_filtered": filtered_by_llm, **info})
