"""The one strategy-selection policy: step > agent preferences > config ranges > builtin ranges,
the reason in the step's events, and a configurable fallback chain with third-party strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigil_core import hookimpl
from sigil_core.config import load_config
from sigil_core.model import Agent, Plan, PlanStep, ReasoningResult
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.plugins import PluginHost
from sigil_core.strategies import (
    StrategySettings,
    choose_strategy,
    fallback_chain,
    settings_from,
)

BUILTINS = {"direct", "chain_of_thought", "tree_of_thoughts", "react", "mcts"}


# --------------------------------------------------------------------------- the policy


def test_each_level_of_the_policy_in_order():
    installed = BUILTINS | {"debate"}
    settings = settings_from({"0.5-0.7": "debate"}, None)
    step = choose_strategy("simple", installed, explicit="mcts", preferences=["debate"],
                           settings=settings)
    assert (step.name, step.reason) == ("mcts", "named by the plan step")
    agent = choose_strategy("simple", installed, preferences=["nope", "debate"],
                            agent_name="closer", settings=settings)
    assert agent.name == "debate" and "agent 'closer'" in agent.reason
    ranged = choose_strategy("complex", installed, settings=settings)
    assert ranged.name == "debate" and "strategies.ranges 0.5-0.7" in ranged.reason
    builtin = choose_strategy("moderate", installed, settings=settings)
    assert builtin.name == "chain_of_thought" and "builtin range" in builtin.reason


def test_names_not_installed_fall_through_and_say_so():
    choice = choose_strategy("complex", {"direct", "chain_of_thought"}, explicit="debate",
                             settings=settings_from({"0.5-0.7": "ghost"}, None))
    assert choice.name == "chain_of_thought"
    assert "debate is not installed" in choice.reason and "ghost is not installed" in choice.reason


def test_a_third_party_strategy_falls_back_along_the_configured_chain():
    installed = BUILTINS | {"debate", "vote"}
    chain = settings_from(None, ["debate", "vote", "chain_of_thought", "direct"])
    assert fallback_chain("debate", installed, chain) == ["debate", "vote", "chain_of_thought",
                                                          "direct"]
    # Not in the chain: falls back from the builtin strategy of the step's complexity, never
    # up to the strongest builtin.
    assert fallback_chain("vote", installed, StrategySettings(), "moderate") == [
        "vote", "chain_of_thought", "direct"]
    # critical: the strongest installed strategy of the configured chain
    assert choose_strategy("critical", installed, settings=chain).name == "debate"


def test_tools_raise_the_builtin_choice_to_react_only():
    assert choose_strategy("simple", BUILTINS, tools_needed=True).name == "react"
    assert choose_strategy("critical", BUILTINS, tools_needed=True).name == "mcts"


@pytest.mark.parametrize("ranges,fallback,problem", [
    ({"0.5": "x"}, None, "not a range"),
    ({"0.7-0.5": "x"}, None, "LOW < HIGH"),
    ({"0.2-0.6": "x", "0.5-0.9": "y"}, None, "overlap"),
    (None, ["a", "a"], "twice"),
])
def test_bad_strategy_config_is_refused(ranges, fallback, problem):
    with pytest.raises(ValueError, match=problem):
        settings_from(ranges, fallback)


def test_bad_strategy_config_file_is_a_config_error(sigil):
    (sigil.home / "config.yaml").write_text("strategies:\n  ranges: {'0.9-0.1': x}\n")
    proc = sigil("orchestrate", "Qualify this lead: Ann at Initech")
    assert proc.returncode == 2
    assert "strategies" in proc.stderr and "LOW < HIGH" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- in a run


class Debate:
    """A third party's strategy: two LLM calls, or a failure when asked to."""

    name = "debate"
    fail = False

    async def execute(self, run, step, context):
        if self.fail:
            raise RuntimeError("debate could not agree")
        first = await run.llm.generate(context.prompt("Argue for."), purpose="reason",
                                       component="reasoning")
        second = await run.llm.generate(context.prompt("Argue against."), purpose="reason",
                                        component="reasoning")
        return ReasoningResult(output=f"{first.text[:40]} / {second.text[:40]}", confidence=0.7)


class ThirdParty:
    def __init__(self, strategy: Debate) -> None:
        self.strategy = strategy

    @hookimpl
    def sigil_register_strategies(self, register):
        register(self.strategy)

    @hookimpl
    def sigil_register_agents(self, register):
        register(Agent(name="debater", description="Argues", instructions="Argue.",
                       strategy_preferences=["debate", "chain_of_thought"]))

    @hookimpl
    def sigil_plan(self, task):
        return Plan(goal=task, steps=[
            PlanStep("gather", "Gather the facts", complexity="simple"),
            PlanStep("weigh", "Weigh the options", complexity="complex",
                     dependencies=["gather"]),
            PlanStep("answer", "Answer", complexity="moderate", dependencies=["weigh"]),
        ])


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for var in ("SIGIL_DISABLE_PLUGINS", "SIGIL_TOKEN_BUDGET", "ANTHROPIC_API_KEY", "SIGIL_USE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


async def run_with(env: Path, strategy: Debate, config_text: str = "", agent: str | None = None):
    if config_text:
        (env / "home" / "config.yaml").write_text(config_text)
    host = PluginHost(load_entry_points=False).load()
    host.register(ThirdParty(strategy), name="third_party")
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task="Decide whether to expand to Spain", session="sess_pol", agent=agent))
    path = env / "outputs" / "sessions" / "sess_pol.jsonl"
    return outcome, [json.loads(line) for line in path.read_text().splitlines()]


def step_events(events: list[dict]) -> dict[str, dict]:
    return {e["metadata"]["step_name"]: e["metadata"] for e in events
            if e["operation"] == "execute_step"}


def strategy_starts(events: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["metadata"]["step_name"], e["operation"], e["metadata"]["strategy_reason"])
            for e in events if e["component"] == "reasoning" and e["message"].startswith("Starting")
            and "strategy_reason" in (e.get("metadata") or {})]


async def test_an_agents_preferences_choose_a_third_party_strategy(env):
    outcome, events = await run_with(env, Debate(), agent="debater")
    assert outcome.exit_code == 0
    steps = step_events(events)
    assert {s["step_strategy"] for s in steps.values()} == {"debate"}
    assert all("agent 'debater'" in s["strategy_reason"] for s in steps.values())
    # Its calls are booked against the budget like any other.
    debate_ops = [e for e in events if e["operation"] == "debate"
                  and e["message"].startswith("Completed")]
    assert len(debate_ops) == 3 and all(e["tokens_used"]["total_tokens"] > 0 for e in debate_ops)
    assert outcome.result.tokens.by_component["reasoning"] >= sum(
        e["tokens_used"]["total_tokens"] for e in debate_ops)


async def test_a_config_range_chooses_a_third_party_strategy(env):
    outcome, events = await run_with(env, Debate(), "strategies:\n  ranges: {'0.5-0.7': debate}\n")
    assert outcome.exit_code == 0
    steps = step_events(events)
    assert steps["weigh"]["step_strategy"] == "debate"
    assert "strategies.ranges 0.5-0.7" in steps["weigh"]["strategy_reason"]
    assert steps["gather"]["step_strategy"] == "direct"
    assert steps["answer"]["step_strategy"] == "chain_of_thought"


async def test_a_failing_third_party_strategy_falls_back_down_the_configured_chain(env):
    failing = Debate()
    failing.fail = True
    outcome, events = await run_with(
        env, failing, "strategies:\n  ranges: {'0.5-0.7': debate}\n"
                      "  fallback: [debate, direct]\n")
    assert outcome.exit_code == 0
    assert step_events(events)["weigh"]["step_strategy"] == "direct"
    warn = next(e for e in events if e["operation"] == "debate" and e["level"] == "warning"
                and "falling back" in e["message"])
    assert warn["metadata"]["fallback"] == "direct"
    assert ("weigh", "direct", "fallback from debate") in strategy_starts(events)
