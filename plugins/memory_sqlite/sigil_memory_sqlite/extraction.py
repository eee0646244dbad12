"""The extract phase: typed facts from the finished run, stored with consolidation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sigil_core.model import MEMORY_TYPES, ExtractionResult, MemoryItem

from .retrieval import announce_driver
from .settings import MemorySettings, open_store

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
                },
                "required": ["content", "type", "confidence"],
            },
        },
    },
    "required": ["facts"],
}

#: Facts from a run that failed are kept, with less trust.
FAILED_RUN_FACTOR = 0.5
MAX_OUTPUT_CHARS = 6000


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


async def extract(run: Any, task: str, result: Any, output: Any) -> ExtractionResult | None:
    settings = MemorySettings.from_config(run.config)
    if not settings.enabled or not settings.extract:
        return None
    if getattr(getattr(run, "ctx", None), "dry_run", False):
        return None
    announce_driver(run, "extract_memories")
    embedders = run.registry("embedders")
    # Fail before spending tokens when the database cannot be used (corrupt, wrong embedder).
    await asyncio.to_thread(lambda: open_store(run.config, embedders).close())
    answer = await run.llm.generate(
        extraction_prompt(task, output, result),
        schema=FACTS_SCHEMA,
        purpose="extract",
        component="memory",
        hints={"task": task, "output": output},
    )
    value = answer.value if isinstance(answer.value, dict) else {}
    factor = outcome_factor(result, output)
    facts: list[MemoryItem] = []
    for fact in value.get("facts") or []:
        if not isinstance(fact, dict) or not str(fact.get("content") or "").strip():
            continue
        kind = fact.get("type") if fact.get("type") in MEMORY_TYPES else "fact"
        try:
            confidence = min(1.0, max(0.0, float(fact.get("confidence", 0.8)))) * factor
        except (TypeError, ValueError):
            confidence = 0.8 * factor
        category = fact.get("category") if isinstance(fact.get("category"), str) else None
        facts.append(MemoryItem(content=str(fact["content"]), memory_type=kind,
                                confidence=round(confidence, 4), category=category))

    def store_facts() -> list[Any]:
        store = open_store(run.config, embedders)
        try:
            return store.remember_many(facts, session_id=run.session_id)
        finally:
            store.close()

    outcomes = await asyncio.to_thread(store_facts) if facts else []
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
