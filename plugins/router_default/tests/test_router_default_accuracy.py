"""Routing accuracy on the labelled set, through the real route hook with the offline model.

The fast path decides what it is confident about for 0 tokens; the rest costs one LLM call.
"""

from __future__ import annotations

from sigil_core import RouteDecision
from sigil_core.testing import ScriptedProvider

BANDS = {"low": (0.0, 0.3), "medium": (0.3, 0.7), "high": (0.7, 1.01)}


def _in_band(complexity: float, band: str) -> bool:
    lo, hi = BANDS[band]
    return lo <= complexity < hi


async def test_labelled_set_routing_accuracy(rd_make_run, rd_labelled, sigil_home) -> None:
    # The set names agents besides the builtins; they exist here as saved files.
    agents = sigil_home / "agents"
    agents.mkdir()
    for name in ("weekly_digest", "market_scout", "translator"):
        (agents / f"{name}.yaml").write_text(
            f"name: {name}\ndescription: test agent\ninstructions: do it\n")
    assert len(rd_labelled) >= 60
    assert {item["intent"] for item in rd_labelled} == {
        "create_agent", "execute_task", "simple_query", "modify_agent"}

    right = band_right = fast = 0
    misses = []
    for item in rd_labelled:
        run = rd_make_run(item["text"])
        async with run.operation("router", "route_request") as op:
            decision = await run.host.call_first("sigil_route", run=run, task=item["text"])
        assert isinstance(decision, RouteDecision)
        summary = run.summary()
        if decision.source == "fast_path":
            fast += 1
            assert summary.llm_calls == 0 and summary.total_tokens == 0
            assert op.metadata["tokens_used"] == 0 and op.metadata["reason"]
        else:
            assert decision.source == "llm"
            assert summary.llm_calls == 1  # one call for intent + complexity + rationale
        if decision.intent == item["intent"]:
            right += 1
        else:
            misses.append(f"{item['text'][:60]!r}: {decision.intent} ({decision.source}), "
                          f"want {item['intent']}")
        band_right += _in_band(decision.complexity, item["band"])

    n = len(rd_labelled)
    print(f"\nrouting accuracy (intent): {right}/{n} = {right / n:.1%}; complexity band: "
          f"{band_right}/{n} = {band_right / n:.1%}; fast path: {fast}/{n} = {fast / n:.1%}")
    for miss in misses:
        print("  miss:", miss)
    assert right / n >= 0.90
    assert band_right / n >= 0.80
    assert 0 < fast < n  # both paths are exercised


async def test_llm_routing_is_one_structured_call(rd_make_run) -> None:
    provider = ScriptedProvider(by_purpose={"route": lambda req: {
        "intent": "execute_task", "complexity": 0.62, "rationale": "tax help needs steps"}})
    run = rd_make_run("Help me with my taxes", provider=provider)
    async with run.operation("router", "route_request") as op:
        decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert len(provider.requests) == 1
    request = provider.requests[0]
    assert request.purpose == "route" and request.component == "router"
    assert set(request.schema["required"]) == {"intent", "complexity", "rationale"}
    assert request.hints["task"] == "Help me with my taxes"
    assert (decision.intent, decision.complexity, decision.source) == ("execute_task", 0.62, "llm")
    # 0.62 is tree_of_thoughts' range; the core alone installs direct and chain_of_thought.
    assert decision.reasoning_strategy == "chain_of_thought"
    assert decision.handler == "executor_rai"
    assert op.metadata["rationale"] == "tax help needs steps"
    assert "confidence" in op.metadata["fast_path_reason"]
    assert run.summary().by_component["router"] > 0


async def test_unusable_llm_answer_falls_back_to_the_local_guess(rd_make_run) -> None:
    provider = ScriptedProvider(by_purpose={"route": lambda req: "I think it is a task"})
    run = rd_make_run("Help me with my taxes", provider=provider)
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert len(provider.requests) == 2  # the gateway's one re-ask, then the fallback
    assert decision.source == "fallback" and decision.intent == "execute_task"


async def test_threshold_and_switch_come_from_config(rd_make_run) -> None:
    answer = {"intent": "simple_query", "complexity": 0.1, "rationale": "a question"}
    provider = ScriptedProvider(by_purpose={"route": lambda req: answer})
    run = rd_make_run("What is the capital of France?", provider=provider,
                      router={"fast_path": False})
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.source == "llm" and len(provider.requests) == 1

    provider = ScriptedProvider(by_purpose={"route": lambda req: answer})
    run = rd_make_run("What is the capital of France?", provider=provider,
                      router={"threshold": 0.999})
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.source == "llm"

    run = rd_make_run("What is the capital of France?", provider=provider,
                      router={"threshold": 0.5})
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.source == "fast_path"


async def test_agent_preferences_shape_the_strategy(rd_make_run) -> None:
    # lead_qualifier prefers tree_of_thoughts then chain_of_thought; a heavy task stays capped.
    run = rd_make_run("Qualify this lead and book a demo call", agent="lead_qualifier")
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.complexity >= 0.7
    assert decision.reasoning_strategy == "chain_of_thought"  # tree_of_thoughts not installed
    run.host.register(_AllStrategies(), name="all_strategies")
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.reasoning_strategy == "tree_of_thoughts"  # not react: the agent prefers it
    run = rd_make_run("Qualify this lead and book a demo call")  # same host, no agent
    decision = await run.host.call_first("sigil_route", run=run, task=run.ctx.task)
    assert decision.reasoning_strategy == "react"


class _Strategy:
    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, run, step, context):  # pragma: no cover - never run here
        raise NotImplementedError


class _AllStrategies:
    """A plugin registering every strategy of the original design."""

    from sigil_core import hookimpl

    @hookimpl
    def sigil_register_strategies(self, register) -> None:
        for name in ("tree_of_thoughts", "react", "mcts"):
            register(_Strategy(name))
