"""Builtin agents: lead_qualifier and researcher."""

from __future__ import annotations

from typing import Any

from sigil_core import hookimpl


@hookimpl(trylast=True)
def sigil_register_agents(register: Any) -> None:
    from sigil_core.model import Agent

    register(Agent(
        name="lead_qualifier",
        description="Qualifies sales leads with BANT and recommends the next action",
        instructions=("You are a sales development specialist. Qualify the lead with BANT "
                      "(budget, authority, need, timeline), score it 0-100, classify it as hot, "
                      "warm or cold and recommend one concrete next action."),
        tools=[],
        contract="lead_qualification",
        strategy_preferences=["tree_of_thoughts", "chain_of_thought"],
    ))
    register(Agent(
        name="researcher",
        description="Researches a topic and writes a sourced report",
        instructions=("You are a careful analyst. Gather sources, separate facts from claims, "
                      "and report a summary, the sources and at least three key findings."),
        tools=[],
        contract="research_report",
        strategy_preferences=["chain_of_thought"],
    ))
