"""Handler and reasoning-strategy selection from intent and complexity (DESIGN §3).

Strategies by complexity range: direct 0.0-0.3, chain_of_thought 0.3-0.5, tree_of_thoughts
0.5-0.7, react 0.7-0.9, mcts 0.9-1.0. When the chosen strategy is not installed, the next simpler
one is used (mcts -> react -> tree_of_thoughts -> chain_of_thought -> direct), the same chain the
run falls back along when a strategy fails.
"""

from __future__ import annotations

from typing import Collection, Sequence

#: (upper bound, strategy), lower bound inclusive: 0.3 is chain_of_thought.
STRATEGY_RANGES: tuple[tuple[float, str], ...] = (
    (0.3, "direct"),
    (0.5, "chain_of_thought"),
    (0.7, "tree_of_thoughts"),
    (0.9, "react"),
    (float("inf"), "mcts"),
)
#: Strongest first; a missing or failing strategy falls back to the next one.
FALLBACK_CHAIN: tuple[str, ...] = ("mcts", "react", "tree_of_thoughts", "chain_of_thought",
                                   "direct")

#: Handlers that take over the run (the rest go through the full plan-execute-validate flow).
DIRECT_ANSWER = "direct_answer"
AGENT_BUILDER = "agent_builder"
AGENT_EDITOR = "agent_editor"
EXECUTOR = "executor"
#: The spec's name for the executor with reason-act iterations (complexity >= 0.5).
EXECUTOR_RAI = "executor_rai"


def nominal_strategy(complexity: float) -> str:
    """The strategy DESIGN §3 assigns to ``complexity``, ignoring what is installed."""
    for upper, name in STRATEGY_RANGES:
        if complexity < upper:
            return name
    return "mcts"  # pragma: no cover - the last bound is infinite


def select_strategy(
    complexity: float,
    installed: Collection[str] | None = None,
    preferences: Sequence[str] = (),
) -> str:
    """The reasoning strategy for ``complexity``.

    ``installed``: names of registered strategies (None: do not check). ``preferences``: an
    agent's strategy preferences; the first preferred strategy that is installed and no stronger
    than the nominal one wins, so an agent can ask for cheaper reasoning but not escalate a
    trivial request to mcts.
    """
    nominal = nominal_strategy(complexity)
    start = FALLBACK_CHAIN.index(nominal)
    allowed = [s for s in FALLBACK_CHAIN[start:] if installed is None or s in installed]
    for pref in preferences:
        if pref in allowed:
            return pref
    if allowed:
        return allowed[0]
    # Nothing in the chain is installed: a third-party strategy set. Keep the nominal name and
    # let the run report the missing strategy.
    return nominal


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
