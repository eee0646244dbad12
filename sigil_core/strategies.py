"""Which reasoning strategy runs a step, and what it falls back to: one policy, in one place.

The policy (DESIGN §3), first rule that gives an installed strategy wins:

1. the step's own strategy (a plan may name one: ``reasoning_strategy`` on the step);
2. the agent's ``strategy_preferences``, the first one installed;
3. the ``strategies.ranges`` config: complexity ranges to strategy names (third-party names
   allowed), e.g. ``{"0.5-0.7": self_consistency}``;
4. the builtin ranges: direct 0.0-0.3, chain_of_thought 0.3-0.5, tree_of_thoughts 0.5-0.7,
   react 0.7-0.9, mcts 0.9-1.0 (a step that needs an installed tool gets at least react).

A plan step's complexity label stands for a point of that scale (:data:`LABEL_COMPLEXITY`):
simple 0.15, moderate 0.4, complex 0.6, critical 0.95 (critical: the strongest installed
strategy of the fallback chain).

When a strategy fails, the step falls back along the fallback chain (``strategies.fallback``,
strongest first; default mcts -> react -> tree_of_thoughts -> chain_of_thought -> direct): to
the entries after the failing one, or, for a strategy the chain does not list, to the chain from
the builtin strategy of the step's complexity down.

This module imports nothing heavy: plugin modules load it on ``sigil --help``.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

#: Simplest first. The default fallback chain is this order reversed.
STRATEGY_ORDER: tuple[str, ...] = (
    "direct", "chain_of_thought", "tree_of_thoughts", "react", "mcts",
)

#: Upper bounds of each builtin strategy's complexity range (lower bound inclusive).
BUILTIN_RANGES: tuple[tuple[float, str], ...] = (
    (0.3, "direct"), (0.5, "chain_of_thought"), (0.7, "tree_of_thoughts"), (0.9, "react"),
    (float("inf"), "mcts"),
)

#: Where a plan step's complexity label sits on the 0.0-1.0 scale of the ranges.
LABEL_COMPLEXITY: dict[str, float] = {
    "simple": 0.15, "moderate": 0.4, "complex": 0.6, "critical": 0.95,
}

INTENT_HANDLERS = {
    "execute_task": "executor",
    "simple_query": "responder",
    "create_agent": "agent_builder",
    "modify_agent": "agent_editor",
}


class StrategyRange(NamedTuple):
    low: float
    high: float
    name: str

    def contains(self, complexity: float) -> bool:
        # The top of the scale belongs to the last range that reaches it.
        return self.low <= complexity < self.high or complexity == self.high == 1.0


class StrategySettings(NamedTuple):
    """The ``strategies:`` config section, checked."""

    ranges: tuple[StrategyRange, ...] = ()
    fallback: tuple[str, ...] = tuple(reversed(STRATEGY_ORDER))


class StrategyChoice(NamedTuple):
    """The strategy for a step, why it was chosen, and what it falls back to."""

    name: str
    reason: str
    chain: list[str]


def parse_range(key: str) -> tuple[float, float]:
    """``"0.5-0.7"`` as ``(0.5, 0.7)``; ValueError with what to write otherwise."""
    low, sep, high = str(key).partition("-")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise ValueError(f"{key!r} is not a range: write LOW-HIGH, e.g. '0.5-0.7'") from None
    if not sep or not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"{key!r} is not a range within 0.0-1.0 with LOW < HIGH")
    return lo, hi


def settings_from(ranges: Mapping[str, str] | None,
                  fallback: Sequence[str] | None) -> StrategySettings:
    """Check the config's ``strategies.ranges`` and ``strategies.fallback`` (ValueError)."""
    parsed = []
    for key, name in (ranges or {}).items():
        lo, hi = parse_range(key)
        if not isinstance(name, str) or not name:
            raise ValueError(f"range {key!r} must name a strategy, got {name!r}")
        parsed.append(StrategyRange(lo, hi, name))
    parsed.sort()
    for a, b in itertools.pairwise(parsed):
        if b.low < a.high:
            raise ValueError(f"ranges {a.low}-{a.high} and {b.low}-{b.high} overlap")
    chain = tuple(fallback) if fallback else tuple(reversed(STRATEGY_ORDER))
    if len(set(chain)) != len(chain):
        raise ValueError("the fallback chain names a strategy twice")
    return StrategySettings(tuple(parsed), chain)


def step_complexity(label: str | float) -> float:
    """A step's complexity on the 0.0-1.0 scale (labels as in :data:`LABEL_COMPLEXITY`)."""
    if isinstance(label, (int, float)):
        return min(1.0, max(0.0, float(label)))
    return LABEL_COMPLEXITY.get(label, LABEL_COMPLEXITY["moderate"])


def strategy_for_complexity(complexity: float) -> str:
    """The builtin range's strategy for ``complexity``, whatever is installed."""
    for bound, name in BUILTIN_RANGES:
        if complexity < bound:
            return name
    return "mcts"  # pragma: no cover - the last bound is infinite


def handler_for_intent(intent: str) -> str:
    return INTENT_HANDLERS.get(intent, "executor")


def choose_strategy(
    complexity: str | float,
    installed: Collection[str],
    *,
    explicit: str | None = None,
    preferences: Sequence[str] = (),
    agent_name: str | None = None,
    settings: StrategySettings | None = None,
    tools_needed: bool = False,
) -> StrategyChoice:
    """Apply the policy of this module; ``complexity`` is a step label or a 0.0-1.0 number."""
    settings = settings or StrategySettings()
    value = step_complexity(complexity)
    skipped: list[str] = []
    if explicit:
        if explicit in installed:
            return _choice(explicit, "named by the plan step", value, installed, settings)
        skipped.append(f"the step's {explicit} is not installed")
    if preferences:
        for name in preferences:
            if name in installed:
                who = f"agent {agent_name!r}" if agent_name else "the agent"
                return _choice(name, f"{who}'s strategy_preferences", value, installed,
                               settings, skipped)
        skipped.append("no strategy_preferences installed: " + ", ".join(preferences))
    for rng in settings.ranges:
        if rng.contains(value):
            if rng.name in installed:
                return _choice(rng.name, f"strategies.ranges {rng.low:g}-{rng.high:g} in config "
                               f"(complexity {value:g})", value, installed, settings, skipped)
            skipped.append(f"configured {rng.name} is not installed")
    if complexity == "critical":
        strongest = next((n for n in settings.fallback if n in installed), None)
        if strongest:
            return _choice(strongest, "critical step: the strongest installed strategy", value,
                           installed, settings, skipped)
    nominal = strategy_for_complexity(value)
    reason = f"builtin range for complexity {value:g}"
    if (tools_needed and "react" in installed
            and STRATEGY_ORDER.index(nominal) < STRATEGY_ORDER.index("react")):
        nominal, reason = "react", "the step needs tools (react acts on their results)"
    chain = fallback_chain(nominal, installed, settings, value)
    if not chain:
        return StrategyChoice(nominal, reason + " (not installed; nothing to fall back to)", [])
    if chain[0] != nominal:
        skipped.append(f"{nominal} is not installed")
    return _choice(chain[0], reason, value, installed, settings, skipped)


def _choice(name: str, reason: str, value: float, installed: Collection[str],
            settings: StrategySettings, skipped: Iterable[str] = ()) -> StrategyChoice:
    notes = list(skipped)
    if notes:
        reason = f"{reason} ({'; '.join(notes)})"
    return StrategyChoice(name, reason, fallback_chain(name, installed, settings, value))


def fallback_chain(name: str, installed: Collection[str], settings: StrategySettings | None = None,
                   complexity: str | float = "moderate") -> list[str]:
    """``name`` then what it falls back to, installed strategies only, without repeats.

    After a strategy the chain lists: the entries that follow it. After one it does not list
    (a third party's): the chain from the builtin strategy of the step's complexity down, so a
    failing custom strategy never escalates to the strongest builtin.
    """
    chain = list((settings or StrategySettings()).fallback)
    if name in chain:
        rest = chain[chain.index(name) + 1:]
    else:
        nominal = strategy_for_complexity(step_complexity(complexity))
        rest = chain[chain.index(nominal):] if nominal in chain else chain
    out = [name] if name in installed else []
    for n in rest:
        if n in installed and n not in out:
            out.append(n)
    return out


def settings_for(config: Any) -> StrategySettings:
    """The checked strategy settings of a loaded :class:`~sigil_core.config.Config`."""
    section = getattr(config, "strategies", None)
    if section is None:
        return StrategySettings()
    return settings_from(section.ranges, section.fallback)
