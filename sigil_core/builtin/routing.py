"""Builtin routing: one structured LLM call for intent and complexity.

The ``router_default`` plugin replaces this with a zero-token fast path and intent handlers;
this fallback keeps the core usable on its own.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from sigil_core import hookimpl
from sigil_core.strategies import handler_for_intent, strategy_for_complexity


@functools.cache
def route_answer_class() -> type:
    """The answer's schema, built on first use (plugin modules must import fast)."""
    import attrs

    @attrs.define
    class RouteAnswer:
        """Classify the request's intent and rate its complexity from 0.0 to 1.0."""

        intent: Literal["create_agent", "execute_task", "simple_query", "modify_agent"]
        complexity: float
        rationale: str = ""

    attrs.resolve_types(RouteAnswer, globalns={"Literal": Literal})
    return RouteAnswer


PROMPT = """Classify this request into one of:
- create_agent: User wants to create a new agent
- execute_task: User wants to execute a task with an agent
- simple_query: User has a simple question
- modify_agent: User wants to modify an existing agent

Also rate its complexity from 0.0 to 1.0 (steps required, ambiguity, real-world interaction).

Request: {task}

Answer as JSON: {{"intent": ..., "complexity": ..., "rationale": ...}}"""


@hookimpl(trylast=True)
async def sigil_route(run: Any, task: str) -> Any:
    from sigil_core.model import RouteDecision

    result = await run.llm.generate(PROMPT.format(task=task), schema=route_answer_class(),
                                    purpose="route", component="router", hints={"task": task},
                                    max_tokens=200)
    answer = result.value
    complexity = min(1.0, max(0.0, answer.complexity))
    decision = RouteDecision(
        intent=answer.intent,
        complexity=complexity,
        handler=handler_for_intent(answer.intent),
        reasoning_strategy=strategy_for_complexity(complexity),
        rationale=answer.rationale,
        source="llm",
    )
    run.annotate(intent=decision.intent, complexity=decision.complexity,
                 handler=decision.handler, strategy=decision.reasoning_strategy)
    return decision
