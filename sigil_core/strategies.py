"""Which reasoning strategy handles what: complexity ranges and the fallback chain (DESIGN §3)."""

from __future__ import annotations

from typing import Iterable

#: Simplest first. A failing strategy falls back to the next simpler one.
STRATEGY_ORDER: tuple[str, ...] = (
    "direct", "chain_of_thought", "tree_of_thoughts", "react", "mcts",
)

#: Upper bounds of each strategy's complexity range: direct 0.0-0.3, cot 0.3-0.5, ...
_RANGES: tuple[tuple[float, str], ...] = (
    (0.3, "direct"), (0.5, "chain_of_thought"), (0.7, "tree_of_thoughts"), (0.9, "react"),
    (1.01, "mcts"),
)

STEP_COMPLEXITY_STRATEGY = {
    "simple": "direct",
    "moderate": "chain_of_thought",
    "complex": "tree_of_thoughts",
}

INTENT_HANDLERS = {
    "execute_task": "executor",
    "simple_query": "responder",
    "create_agent": "agent_builder",
    "modify_agent": "agent_editor",
}


def strategy_for_complexity(complexity: float) -> str:
    for bound, name in _RANGES:
        if complexity < bound:
            return name
    return "mcts"


def handler_for_intent(intent: str) -> str:
    return INTENT_HANDLERS.get(intent, "executor")


def strategy_for_step(complexity: str, installed: Iterable[str]) -> str:
    """simple->direct, moderate->chain_of_thought, complex->tree_of_thoughts,
    critical->the strongest installed strategy."""
    if complexity == "critical":
        names = set(installed)
        for name in reversed(STRATEGY_ORDER):
            if name in names:
                return name
        return "direct"
    return STEP_COMPLEXITY_STRATEGY.get(complexity, "chain_of_thought")


def fallback_chain(preferred: str, installed: Iterable[str]) -> list[str]:
    """The preferred strategy then every simpler one, keeping only installed strategies.

    A strategy outside the standard order (a third party's) is tried first, then the
    whole standard chain from the strongest down.
    """
    names = set(installed)
    if preferred in STRATEGY_ORDER:
        idx = STRATEGY_ORDER.index(preferred)
        chain = list(reversed(STRATEGY_ORDER[: idx + 1]))
    else:
        chain = [preferred, *reversed(STRATEGY_ORDER)]
    return [n for n in chain if n in names]
