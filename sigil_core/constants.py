"""The vocabulary shared by the core and plugins, defined once: event levels, components,
intents, step complexities, memory types, and the token estimate. Dependency-free, so a plugin
module loaded on ``sigil --help`` can use it without loading the data model."""

from __future__ import annotations

import math

#: Event levels, lowest first (the logging contract's).
LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warning", "error", "critical")
LEVEL_RANK: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}

#: Components an event may name (the logging contract's).
COMPONENTS: tuple[str, ...] = (
    "orchestrator", "router", "planner", "reasoning", "memory", "contracts",
    "evolution", "context", "tools", "cli", "api", "system",
)
#: What a request can be routed as.
INTENTS: tuple[str, ...] = ("create_agent", "execute_task", "simple_query", "modify_agent")
#: A plan step's complexity labels.
STEP_COMPLEXITIES: tuple[str, ...] = ("simple", "moderate", "complex", "critical")
#: Kinds of remembered facts.
MEMORY_TYPES: tuple[str, ...] = ("fact", "preference", "event", "skill", "pattern")


def estimate_tokens(text: str) -> int:
    """The documented estimate: one token per 4 characters, rounded up (at least 1)."""
    return max(1, math.ceil(len(text) / 4))
