"""The original design's contract templates, registered like any plugin's contracts.

A run with no agent gets the template whose ``keywords`` its task mentions (first match). The
sales and research templates also carry the plan that usually serves them (``suggested_steps``):
domain knowledge lives here, as data, not in a model or a planner. Those plans are as wide as
the work allows (every step waits only for what it reads), their last step writes the
contract's deliverables itself (no separate formatting call), and none of them fetches
memories (the retrieve phase does, before the steps run).
"""

from __future__ import annotations

import functools
from typing import Any

from sigil_core import hookimpl


def _step(name: str, description: str, complexity: str, deps: list[str] | None = None,
          inputs: list[str] | None = None, outputs: list[str] | None = None,
          final: bool = False) -> dict[str, Any]:
    """A suggested plan step, in the planner's answer format (``final``: it writes the
    contract's deliverables)."""
    return {"name": name, "description": description, "complexity": complexity,
            "inputs": inputs or [], "outputs": outputs or [], "dependencies": deps or [],
            "tools_required": [], "needs_contract": final}


@functools.cache
def templates() -> tuple[Any, ...]:
    """The templates, built on first use (plugin modules load on `sigil --help`)."""
    from sigil_core.model import Contract
    from sigil_core.model import Deliverable as D

    LEAD_QUALIFICATION = Contract(
        name="lead_qualification",
        description="A sales lead qualified with BANT and a next action",
        deliverables=[
            D("score", "integer", "Qualification score from 0 to 100", rules=["0 <= value <= 100"]),
            D("bant_assessment", "object", "Budget, authority, need and timeline findings",
              rules=["all(k in value for k in ['budget', 'authority', 'need', 'timeline'])"],
              properties={
                  "budget": "What the lead can spend, and whether it is confirmed",
                  "authority": "Whether the contact decides or who does",
                  "need": "The problem the lead wants solved",
                  "timeline": "When the lead intends to buy",
              }),
            D("recommended_action", "string", "The next sales action", rules=["len(value) >= 10"]),
            D("tier", "string", "hot, warm or cold", rules=["value in ['hot', 'warm', 'cold']"]),
        ],
        failure_strategy="retry",
        max_retries=2,
        suggested_steps=[
            # Research and BANT both start from the lead as stated: they run side by side.
            _step("research_lead", "Research the lead's role and company", "moderate",
                  inputs=["lead"], outputs=["lead_profile"]),
            _step("assess_bant", "Assess budget, authority, need and timeline (BANT) from what "
                  "the lead states", "complex", inputs=["lead"], outputs=["bant_assessment"]),
            _step("generate_recommendation", "Score and tier the lead from the profile and the "
                  "BANT assessment, recommend the next sales action, and give them as the "
                  "contract's deliverables", "moderate", ["research_lead", "assess_bant"],
                  ["lead_profile", "bant_assessment"],
                  ["score", "bant_assessment", "recommended_action", "tier"], final=True),
        ],
    )

    RESEARCH_REPORT = Contract(
        name="research_report",
        description="A research report with a summary, its sources and key findings",
        deliverables=[
            D("summary", "string", "A summary of at least 50 characters", rules=["len(value) >= 50"]),
            D("sources", "array", "Where the information came from", rules=["len(value) >= 1"]),
            D("key_findings", "array", "At least three findings", rules=["len(value) >= 3"]),
        ],
        suggested_steps=[
            _step("gather_information", "Gather sources and facts on the topic", "moderate",
                  outputs=["sources"]),
            _step("identify_trends", "Identify the main trends and signals", "moderate",
                  outputs=["trends"]),
            _step("analyze_findings", "Analyse the material, weigh the evidence and write the "
                  "report: summary, sources and key findings", "complex",
                  ["gather_information", "identify_trends"], ["sources", "trends"],
                  ["summary", "sources", "key_findings"], final=True),
        ],
    )

    APPOINTMENT_BOOKING = Contract(
        name="appointment_booking",
        description="A booked appointment",
        deliverables=[
            D("date", "string", "ISO date YYYY-MM-DD",
              rules=[r"matches('^\\d{4}-\\d{2}-\\d{2}$', value)"], examples=["2026-03-14"]),
            D("time", "string", "HH:MM, 24-hour", rules=[r"matches('^\\d{2}:\\d{2}$', value)"],
              examples=["14:30"]),
            D("attendees", "array", "Who attends", rules=["len(value) >= 1"]),
            D("confirmation", "string", "Confirmation message"),
        ],
    )

    MARKET_ANALYSIS = Contract(
        name="market_analysis",
        description="A market analysis",
        deliverables=[
            D("market_size", "string", "Estimated size of the market"),
            D("trends", "array", "Main trends", rules=["len(value) >= 2"]),
            D("competitors", "array", "Main competitors", rules=["len(value) >= 1"]),
            D("opportunities", "array", "Opportunities", required=False),
        ],
    )

    COMPLIANCE_CHECK = Contract(
        name="compliance_check",
        description="A compliance review",
        deliverables=[
            D("compliant", "boolean", "Whether the subject complies"),
            D("issues", "array", "Issues found (may be empty when compliant)", required=False),
            D("recommendations", "array", "What to do", rules=["len(value) >= 1"]),
        ],
        failure_strategy="fail",
    )

    TEMPLATES = (LEAD_QUALIFICATION, RESEARCH_REPORT, APPOINTMENT_BOOKING, MARKET_ANALYSIS,
                 COMPLIANCE_CHECK)

    _KEYWORDS: dict[str, list[str]] = {
        "lead_qualification": ["lead", "prospect", "qualify"],
        "research_report": ["research", "report", "study", "investigate"],
        "appointment_booking": ["appointment", "book a meeting", "schedule a meeting"],
        "market_analysis": ["market analysis", "market size", "competitor analysis"],
        "compliance_check": ["compliance", "compliant", "regulation"],
    }
    for _c in TEMPLATES:
        _c.keywords = _KEYWORDS[_c.name]
    return TEMPLATES


@hookimpl(trylast=True)
def sigil_register_contracts(register: Any) -> None:
    for contract in templates():
        register(contract)
