"""Handler and reasoning-strategy selection from intent and complexity (DESIGN §3).

The strategy comes from the core's strategy policy (``sigil_core.choose_strategy``), the same one
that gives each plan step its strategy, so the router never disagrees with the run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sigil_core import (
    STRATEGY_ORDER,
    StrategySettings,
    choose_strategy,
)

#: Handlers that take over the run (the rest go through the full plan-execute-validate flow).
DIRECT_ANSWER = "direct_answer"
AGENT_BUILDER = "agent_builder"
AGENT_EDITOR = "agent_editor"
EXECUTOR = "executor"
#: The spec's name for the executor with reason-act iterations (complexity >= 0.5).
EXECUTOR_RAI = "executor_rai"


def select_strategy(
    complexity: float,
    installed: Collection[str] | None = None,
    preferences: Sequence[str] = (),
    settings: StrategySettings | None = None,
) -> str:
    """The reasoning strategy for ``complexity``, by the core's one strategy policy
    (:func:`sigil_core.strategies.choose_strategy`): an agent's first installed preference, then
    the configured ranges, then the builtin ones; third-party names are kept, not dropped.

    ``installed``: names of registered strategies (None: do not check).
    """
    names = set(STRATEGY_ORDER) | set(preferences) if installed is None else installed
    return choose_strategy(complexity, names, preferences=preferences, settings=settings).name


def select_handler(intent: str, complexity: float, simple_query_max: float = 0.5) -> str:
    """The handler for an intent. A "simple" query the router rates at ``simple_query_max`` or
    above is not simple: it goes through the full executor flow."""
    if intent == "simple_query":
        return DIRECT_ANSWER if complexity < simple_query_max else EXECUTOR
    if intent == "create_agent":
        return AGENT_BUILDER
    if intent == "modify_agent":
        return AGENT_EDITOR
    return EXECUTOR_RAI if complexity >= 0.5 else EXECUTOR
