"""Routing: the zero-token fast path first, else ONE structured LLM call.

The spec spends two LLM calls (~400 tokens) on intent and complexity. Here a local classifier
decides the unambiguous requests for free, and the rest costs one short structured call that
returns intent, complexity and a rationale together.
"""

from __future__ import annotations

import functools
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sigil_core import (
    INTENTS,
    ConfigError,
    RouteDecision,
    StructuredOutputError,
    strategy_settings,
)

from .classifier import Classification, Classifier
from .selection import select_handler, select_strategy

if TYPE_CHECKING:
    from sigil_core import Run


@attrs.define(frozen=True)
class RouterSettings:
    """The ``router:`` section of the config file."""

    #: Decide locally when the classifier is at least this confident (0-1; 1.01 disables).
    threshold: float = 0.8
    fast_path: bool = True
    #: Requests longer than this always go to the LLM: long text hides intent in its details.
    fast_path_max_words: int = 80
    #: A "simple" query rated this complex or more runs the full flow instead.
    simple_query_max_complexity: float = 0.5
    #: Output cap for the routing call (intent + complexity + a short rationale).
    max_tokens: int = 120
    #: Output cap for a simple query's direct answer.
    answer_max_tokens: int = 400

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> RouterSettings:
        """Read and check the section; a bad value is a ConfigError naming the key."""
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"router.{unknown[0]}: unknown setting; known settings: "
                              f"{', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            if field.name not in section:
                continue
            raw = section[field.name]
            if field.type in ("bool", bool):
                if not isinstance(raw, bool):
                    raise ConfigError(f"router.{field.name}: expected true or false, got {raw!r}")
                values[field.name] = raw
                continue
            want_int = field.type in ("int", int)
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
                    want_int and not float(raw).is_integer()):
                raise ConfigError(f"router.{field.name}: expected a number, got {raw!r}")
            values[field.name] = int(raw) if want_int else float(raw)
        settings = cls(**values)
        if not 0.0 <= settings.threshold <= 1.01:
            raise ConfigError(f"router.threshold: {settings.threshold} is not between 0 and 1 "
                              "(1.01 turns the fast path off)")
        if not 0.0 <= settings.simple_query_max_complexity <= 1.0:
            raise ConfigError("router.simple_query_max_complexity: must be between 0 and 1")
        for name in ("fast_path_max_words", "max_tokens", "answer_max_tokens"):
            if getattr(settings, name) < 1:
                raise ConfigError(f"router.{name}: must be at least 1")
        return settings


def settings_for(run: Run) -> RouterSettings:
    return RouterSettings.from_section(run.config.section("router"))


ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": list(INTENTS)},
        "complexity": {"type": "number", "minimum": 0.0, "maximum": 1.0},
        "rationale": {"type": "string", "maxLength": 300},
    },
    "required": ["intent", "complexity", "rationale"],
}

# Short on purpose: this prompt is paid on every routed request the fast path leaves over.
ROUTE_PROMPT = """Route this request for an agent framework.
intent: create_agent (define a new agent) | modify_agent (change an existing agent) | \
execute_task (work to carry out) | simple_query (a question answered directly in one reply)
complexity 0.0-1.0: number of steps, ambiguity, real-world actions, stakes.{agents}
Request: {task}
Reply with JSON only: {{"intent": ..., "complexity": ..., "rationale": "<15 words"}}"""


def known_agent_names(run: Run) -> list[str]:
    """Registered agents and saved agent files, by name only (a broken file must not stop
    routing; it is reported when that agent is used)."""
    names = set(run.registry("agents"))
    names.update(_saved_agent_names(run.config.agents_dir))
    return sorted(names)


#: folder -> (its mtime, the agent names saved in it): read again when the folder changes.
_SAVED: dict[str, tuple[int, tuple[str, ...]]] = {}


def _saved_agent_names(folder: Path) -> tuple[str, ...]:
    """The names of the agent files in ``folder``, listed again only when the folder changed
    since (a file added, removed or renamed changes its mtime): every routed run asked.
    A folder changed within the last second is listed every time, as git does with its
    index: two changes within one tick of the file system's clock leave one mtime."""
    from sigil_core import AGENT_NAME

    try:
        st = os.stat(folder)
    except OSError:
        return ()
    if not stat.S_ISDIR(st.st_mode):
        return ()
    key = os.fspath(folder)
    hit = _SAVED.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns:
        return hit[1]
    names = tuple(p.stem for p in folder.glob("*.yaml") if AGENT_NAME.match(p.stem))
    if time.time_ns() - st.st_mtime_ns > 1_000_000_000:
        if len(_SAVED) > 64:
            _SAVED.clear()
        _SAVED[key] = (st.st_mtime_ns, names)
    return names


@functools.lru_cache(maxsize=32)
def _classifier(agents: tuple[str, ...]) -> Classifier:
    """One classifier per set of known agents (it is not changed by classifying): building
    one compiles a pattern of the agents' names."""
    return Classifier(agents)


async def route(run: Run, task: str) -> RouteDecision:
    """Decide intent, complexity, handler and strategy; annotate the routing operation."""
    settings = settings_for(run)
    agents = known_agent_names(run)
    guess = _classifier(tuple(agents)).classify(task)
    words = len(task.split())
    fast = (settings.fast_path and guess.confidence >= settings.threshold
            and words <= settings.fast_path_max_words)
    if fast:
        intent, complexity, rationale, source = (guess.intent, guess.complexity, guess.reason,
                                                 "fast_path")
    else:
        intent, complexity, rationale, source = await _ask_llm(run, task, agents, guess,
                                                               settings)

    preferences: list[str] = []
    if run.ctx.agent:
        # `--agent NAME`: the core runs the task with that agent (intent execute_task); its
        # strategy preferences narrow the choice of strategy.
        from sigil_core import get_agent

        preferences = list(get_agent(run.config, run.host, run.ctx.agent).strategy_preferences)

    handler = select_handler(intent, complexity, settings.simple_query_max_complexity)
    strategy = select_strategy(complexity, set(run.registry("strategies")), preferences,
                               strategy_settings(run.config))
    decision = RouteDecision(intent=intent, complexity=complexity, handler=handler,
                             reasoning_strategy=strategy, rationale=rationale, source=source)
    metadata: dict[str, Any] = {
        "intent": decision.intent, "complexity": decision.complexity, "handler": decision.handler,
        "strategy": decision.reasoning_strategy, "source": source,
        "confidence": guess.confidence, "threshold": settings.threshold,
    }
    if guess.agent_name and intent in ("create_agent", "modify_agent"):
        metadata["agent"] = guess.agent_name
    if fast:
        metadata.update(reason=guess.reason, tokens_used=0, llm_calls=0)
    else:
        metadata.update(rationale=rationale, fast_path_guess=guess.intent,
                        fast_path_reason=_why_not_fast(guess, settings, words))
    run.annotate(**metadata)
    return decision


def _why_not_fast(guess: Classification, settings: RouterSettings, words: int) -> str:
    if not settings.fast_path:
        return "fast path disabled in config"
    if words > settings.fast_path_max_words:
        return f"{words} words is over fast_path_max_words={settings.fast_path_max_words}"
    return (f"confidence {guess.confidence:.2f} < threshold {settings.threshold:.2f}"
            f" ({guess.reason})")


async def _ask_llm(run: Run, task: str, agents: list[str], guess: Classification,
                   settings: RouterSettings) -> tuple[str, float, str, str]:
    """One structured call; a malformed answer (after the gateway's re-ask) falls back to the
    local guess rather than failing the run: routing is recoverable."""
    agent_line = f"\nExisting agents: {', '.join(agents)}" if agents else ""
    prompt = ROUTE_PROMPT.format(task=task, agents=agent_line)
    try:
        result = await run.llm.generate(
            prompt, schema=ROUTE_SCHEMA, purpose="route", component="router",
            max_tokens=settings.max_tokens, hints={"task": task, "agents": agents},
        )
    except StructuredOutputError as exc:
        run.event("warning", "router", "route_request",
                  f"Routing answer unusable, using the local classifier: {exc}",
                  metadata={"fallback_intent": guess.intent})
        return guess.intent, guess.complexity, f"local fallback: {guess.reason}", "fallback"
    value = result.value
    if attrs.has(type(value)):
        value = attrs.asdict(value)
    intent = value["intent"]
    complexity = min(1.0, max(0.0, float(value["complexity"])))
    rationale = str(value.get("rationale") or "").strip()
    return intent, complexity, rationale, "llm"
