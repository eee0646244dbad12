"""The retrieve and extract phases, the same for every backend.

Retrieve: hybrid search (k=20), LLM filtering to 10 when more come back, the relevant
categories, the spec's metadata on the ``retrieve_context`` completion event. Extract: typed
facts from the finished run, stored with consolidation (the backend's ``remember_many``); the
facts come from the final step's own answer when it carried them (:func:`fold_facts`), else
from one extraction call.
A backend's hooks answer when ``memory.backend`` names it and call :func:`retrieve` /
:func:`extract` here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from ..constants import MEMORY_TYPES
from ..model import ExtractionResult, MemoryContext, MemoryItem
from . import Hit, MemorySettings, open_store
from .consolidation import MAX_ITEM_CHARS, OFFLINE_PROVIDER
from .text import content_terms

FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "indices": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
    "required": ["indices"],
}

FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "minLength": 1},
                    "type": {"type": "string", "enum": list(MEMORY_TYPES)},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "category": {"type": "string"},
                    "subject": {"type": "string", "description":
                                "who or what the fact is about, e.g. 'John Smith'"},
                    "attribute": {"type": "string", "description":
                                  "what about the subject it states, e.g. 'lead status'; a "
                                  "newer fact with the same subject and attribute replaces "
                                  "the older one"},
                },
                "required": ["content", "type", "confidence"],
            },
        },
    },
    "required": ["facts"],
}

#: Share of the ``memory`` budget allocation that the memories of one prompt may take in all;
#: each memory gets at most that divided by ``filter_to`` (never under MIN_ITEM_TOKENS).
PROMPT_SHARE = 0.25
MIN_ITEM_TOKENS = 30
CHARS_PER_TOKEN = 4  # the estimate of sigil_core.llm.estimate_tokens
#: Facts from a run that failed are kept, with less trust.
FAILED_RUN_FACTOR = 0.5
MAX_OUTPUT_CHARS = 6000


def active_settings(run: Any, backend: str) -> MemorySettings | None:
    """The memory settings when ``backend`` is the configured, enabled backend, else None."""
    settings = MemorySettings.from_config(run.config)
    if settings.backend != backend or not settings.enabled:
        return None
    return settings


# ----------------------------------------------------------------------------- retrieve


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def fit_to_allocation(items: list[MemoryItem], allocation_tokens: int,
                      filter_to: int) -> tuple[list[MemoryItem], int, int]:
    """Memories as they go into prompts (the filter's and every step's): each cut to its
    share, the list cut to the total share of the memory allocation, best ranked first, so a
    huge stored item cannot make every later run exceed its budget. Returns (items, number
    truncated, number dropped); stored items are not changed."""

    total = int(allocation_tokens * PROMPT_SHARE) * CHARS_PER_TOKEN
    per_item = max(MIN_ITEM_TOKENS * CHARS_PER_TOKEN, total // max(1, filter_to))
    out: list[MemoryItem] = []
    used = truncated = 0
    for item in items:
        content = shorten(item.content, per_item)
        if used + len(content) > total and out:
            break
        if content != item.content:
            truncated += 1
            item = attrs.evolve(item, content=content)
        out.append(item)
        used += len(content)
    return out, truncated, len(items) - len(out)


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


def relevant_categories(task: str, hits: Sequence[Hit],
                        categories: Sequence[tuple[str, int]]) -> list[str]:
    """Categories of the retrieved items, then those (with active items) whose name shares a
    content word with the task. ``categories`` are ``(name, active items)``."""
    found: list[str] = []
    for h in hits:
        if h.item.category and h.item.category not in found:
            found.append(h.item.category)
    terms = set(content_terms(task))
    for name, count in categories:
        if count and name not in found and set(content_terms(name.replace("_", " "))) & terms:
            found.append(name)
    return found


@asynccontextmanager
async def run_store(run: Any, backend: str) -> AsyncIterator[Any]:
    """The run's handle on ``backend``'s store: opened by the first phase that needs it and
    closed when the run ends (``run.on_close``), not after each phase. A store's last handle
    closed closes the file (SQLite checkpoints its log there), so runs that do not overlap
    opened and closed it twice each, retrieve then extract (runs one after another in one
    process: 15.7 -> 12.5 ms each). Without ``on_close`` (a stand-in run), the handle is the
    phase's own. An open that fails is not kept: the next phase tries again."""
    on_close = getattr(run, "on_close", None)
    state = getattr(run, "state", None)
    if on_close is None or not isinstance(state, dict):
        store = await open_store(run.config, run, backend=backend)
        try:
            yield store
        finally:
            await store.close()
        return
    handles = state.setdefault("memory_stores", {})
    store = handles.get(backend)
    if store is None:
        store = await open_store(run.config, run, backend=backend)
        handles[backend] = store

        async def close(store: Any = store) -> None:
            if handles.get(backend) is store:
                del handles[backend]
            await store.close()

        on_close(close)
    yield store


async def retrieve(run: Any, task: str, backend: str) -> MemoryContext | None:
    settings = active_settings(run, backend)
    if settings is None:
        return None
    # The offline model's memories are placeholders: a run with a real provider does not
    # retrieve them (unless memory.include_offline), so they never pass for findings.
    exclude_offline = (not settings.include_offline
                       and run.llm.provider.name != OFFLINE_PROVIDER)
    async with run_store(run, backend) as store:
        hits = await store.search(task, k=settings.k * (3 if exclude_offline else 1),
                                  min_similarity=settings.min_similarity)
        offline_excluded = 0
        if exclude_offline:
            kept = [h for h in hits if h.item.provider != OFFLINE_PROVIDER]
            offline_excluded = len(hits) - len(kept)
            hits = kept[: settings.k]
        categories = await store.relevant_categories(task, hits)
        info = {"backend": backend, "embedder": store.embedder.name,
                "vector_hits": sum(1 for h in hits if h.vector_rank is not None),
                "text_hits": sum(1 for h in hits if h.text_rank is not None)}
        if offline_excluded:
            info["offline_excluded"] = offline_excluded
    items, truncated, dropped = fit_to_allocation(
        [h.item for h in hits], run.budget.allocation("memory"), settings.filter_to)
    if truncated or dropped:
        info.update(memories_truncated=truncated, memories_dropped_for_size=dropped)
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


# ----------------------------------------------------------------------------- extract


def render(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str, indent=1)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " ..."


def extraction_prompt(task: str, output: Any, result: Any) -> str:
    steps = []
    for name, step in (getattr(result, "step_results", None) or {}).items():
        status = "ok" if getattr(step, "success", True) else f"failed: {step.error}"
        steps.append(f"- {name} ({status})")
    return (
        "Extract key facts worth remembering for future tasks from this execution.\n\n"
        f"Task: {task}\n\nSteps:\n" + ("\n".join(steps) or "- none") +
        f"\n\nOutput:\n{render(output)}\n\n"
        "For each fact give: content (one self-contained sentence), type (fact | preference | "
        "event | skill | pattern), confidence (0.0-1.0) and a short category (e.g. the "
        'subject). Return JSON {"facts": [...]}.'
    )


def outcome_factor(result: Any, output: Any) -> float:
    success = getattr(result, "success", True) if result is not None else False
    return 1.0 if success and output is not None else FAILED_RUN_FACTOR


def parse_facts(value: Any, factor: float) -> list[MemoryItem]:
    """The usable facts of the model's answer; confidence scaled by the run's outcome. Facts
    over MAX_ITEM_CHARS are left out (a model's essay is not a fact)."""
    value = value if isinstance(value, dict) else {}
    facts: list[MemoryItem] = []
    for fact in value.get("facts") or []:
        if not isinstance(fact, dict) or not str(fact.get("content") or "").strip():
            continue
        if len(" ".join(str(fact["content"]).split())) > MAX_ITEM_CHARS:
            continue
        kind = str(fact["type"]) if fact.get("type") in MEMORY_TYPES else "fact"
        try:
            confidence = min(1.0, max(0.0, float(fact.get("confidence", 0.8)))) * factor
        except (TypeError, ValueError):
            confidence = 0.8 * factor
        text: dict[str, Any] = {key: fact.get(key) if isinstance(fact.get(key), str) else None
                for key in ("category", "subject", "attribute")}
        facts.append(MemoryItem(content=str(fact["content"]), memory_type=kind,
                                confidence=round(confidence, 4), **text))
    return facts


# ----------------------------------------------------------------------------- folded extraction

#: The optional property of the final step's answer that carries the facts worth remembering.
FOLDED_KEY = "facts_to_remember"


def extraction_wanted(config: Any) -> bool:
    """Memory is on and extraction enabled (the settings every backend shares)."""
    settings = MemorySettings.from_config(config)
    return settings.enabled and settings.extract


def fold_facts(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` plus an optional property for the facts worth remembering, so the final
    step's call extracts them too: one call less, and none after the last step. The
    property is optional: an answer without it costs the separate extraction call, as
    before. None when the schema cannot take it (not an object, or the key is taken)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    props = schema.get("properties") or {}
    if FOLDED_KEY in props:
        return None
    facts = dict(FACTS_SCHEMA["properties"]["facts"])
    facts["description"] = ("Facts worth remembering for future tasks, learnt while doing this "
                            "one: each one self-contained sentence with its type, confidence "
                            "and category")
    return {**schema, "properties": {**props, FOLDED_KEY: facts}}


def unfold_facts(output: Any) -> tuple[Any, list[Any] | None]:
    """The answer without the folded facts, and the facts (None when it carries none)."""
    if not isinstance(output, dict) or FOLDED_KEY not in output:
        return output, None
    rest = {k: v for k, v in output.items() if k != FOLDED_KEY}
    facts = output[FOLDED_KEY]
    return rest, facts if isinstance(facts, list) else None


async def extract(run: Any, task: str, result: Any, output: Any,
                  backend: str) -> ExtractionResult | None:
    settings = active_settings(run, backend)
    if settings is None or not settings.extract:
        return None
    if getattr(getattr(run, "ctx", None), "dry_run", False):
        return None
    # Opened before spending tokens: an unusable store (unreachable, corrupt, wrong embedder)
    # fails the phase without an LLM call.
    async with run_store(run, backend) as store:
        folded = getattr(result, "remembered", None)
        if folded is not None:
            # The final step's call gave them (its tokens are booked to that step).
            value, model = {"facts": folded.get("facts") or []}, folded.get("model")
            run.annotate(folded=True)
        else:
            answer = await run.llm.generate(
                extraction_prompt(task, output, result),
                schema=FACTS_SCHEMA,
                purpose="extract",
                component="memory",
                hints={"task": task, "output": output},
            )
            value, model = answer.value, answer.model
        facts = [attrs.evolve(f, provider=run.llm.provider.name, model=model)
                 for f in parse_facts(value, outcome_factor(result, output))]
        outcomes = await store.remember_many(facts, session_id=run.session_id) if facts else []
    counts = {a: sum(1 for o in outcomes if o.action == a) for a in ("new", "merged", "superseded")}
    metadata = {
        "facts_extracted": len(facts),
        "fact_types": [f.memory_type for f in facts],
        "memories_new": counts["new"],
        "memories_merged": counts["merged"],
        "memories_superseded": counts["superseded"],
    }
    run.annotate(**metadata)
    return ExtractionResult(stored=[o.item for o in outcomes], metadata=metadata)
