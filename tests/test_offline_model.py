"""The offline model: useful within its means (tools), honest beyond them (placeholders).

Unit tests of its general rules, then runs of the real CLI: the tool questions answered through
the tools, contracts met whatever the wording, greetings on the simple-answer path.
"""

from __future__ import annotations

import json

import pytest

from sigil_core.builtin.offline import (
    OfflineProvider,
    instance_for,
    plan_for,
    respond,
    tools_for,
)
from sigil_core.builtin.offline_arguments import (
    extract_expression,
    extract_timezones,
    propose_arguments,
)
from sigil_core.contracts import PLACEHOLDER_MARK, check_contract, contract_schema
from sigil_core.llm import LLMRequest

CALCULATOR = {"name": "calculator", "description": "Evaluate an arithmetic expression",
              "input_schema": {"type": "object", "required": ["expression"],
                               "properties": {"expression": {"type": "string"}}}}
CLOCK = {"name": "current_time", "description": "The current time in a timezone",
         "input_schema": {"type": "object",
                          "properties": {"timezone": {"type": "string", "default": "UTC"}}}}


# --------------------------------------------------------------------------- arguments


def test_expressions_and_timezones_are_found_in_text():
    assert extract_expression("Please compute (17 + 4) * 3 for me") == "(17 + 4) * 3"
    assert extract_expression("what is 12 plus 30 divided by 6") == "12 + 30 / 6"
    assert extract_expression("We met 3 people in 2024") is None
    assert extract_timezones("time in Tokyo, then America/Chicago") == [
        "America/Chicago", "Asia/Tokyo"]


def test_arguments_follow_the_schema():
    convert = {"type": "object", "required": ["source_timezone", "time", "target_timezone"],
               "properties": {"source_timezone": {"type": "string"},
                              "time": {"type": "string"},
                              "target_timezone": {"type": "string"}}}
    assert propose_arguments(convert, "Convert 9:05 from London to Sydney") == {
        "source_timezone": "Europe/London", "time": "09:05",
        "target_timezone": "Australia/Sydney"}
    assert propose_arguments(CALCULATOR["input_schema"], "what time is it?") is None
    assert propose_arguments(CLOCK["input_schema"], "what time is it?") == {}
    assert propose_arguments(CLOCK["input_schema"], "what time is it in Paris?") == {
        "timezone": "Europe/Paris"}


def test_tools_are_chosen_by_name_or_by_a_required_argument_the_text_fills():
    hints = {"tools": [CALCULATOR, CLOCK]}
    assert tools_for("What is 12 * 37?", hints) == ["calculator"]
    assert tools_for("What time is it in Tokyo?", hints) == ["current_time"]
    # A city alone is no reason to read a clock; a number alone no reason to calculate.
    assert tools_for("Write a poem about Paris in 3 verses", hints) == []
    assert tools_for("What is the capital of France?", hints) == []


# --------------------------------------------------------------------------- answers


def _ask(purpose: str, hints: dict, schema: dict | None = None, prompt: str = "") -> str:
    request = LLMRequest(messages=[{"role": "user", "content": prompt or "the prompt"}],
                         purpose=purpose, hints=hints, schema=schema)
    return respond(request)


def test_react_calls_the_tool_then_states_its_result():
    hints = {"task": "What is 12 * 37?", "tools": ["calculator"],
             "tool_schemas": {"calculator": CALCULATOR}, "history": []}
    first = json.loads(_ask("react_step", hints))
    assert first["action"] == "calculator" and first["action_input"] == {"expression": "12 * 37"}
    hints["history"] = [{"action": "calculator", "action_input": first["action_input"], "ok": True,
                         "observation": '{"expression": "12 * 37", "result": 444}'}]
    final = json.loads(_ask("react_step", hints))
    assert final["action"] == "final_answer"
    assert "444" in final["answer"] and PLACEHOLDER_MARK not in final["answer"]


def test_what_it_cannot_do_is_one_short_labelled_line():
    text = _ask("reason", {"task": "Write a limerick about tea", "step": "execute_task",
                           "step_description": "Carry out the request",
                           "dependency_outputs": {"understand_request": "x" * 500}})
    assert text.startswith(PLACEHOLDER_MARK)
    assert "\n" not in text and len(text) < 200
    assert "limerick" not in text and "xxx" not in text


def test_structured_answers_mark_their_strings_and_meet_the_schema():
    schema = {"type": "object", "required": ["summary", "sources", "score"], "properties": {
        "summary": {"type": "string", "minLength": 50},
        "sources": {"type": "array", "minItems": 2, "items": {"type": "string"}},
        "score": {"type": "integer", "minimum": 0, "maximum": 100}}}
    value = instance_for(schema)
    assert len(value["summary"]) >= 50 and len(value["sources"]) == 2
    assert all(s.startswith(PLACEHOLDER_MARK) for s in [value["summary"], *value["sources"]])
    assert 0 <= value["score"] <= 100


def test_a_schema_asked_again_gets_an_equal_answer_of_its_own():
    """instance_for keeps its answers by schema: a caller that changes one (the final step
    adds the facts to remember) must not change the next caller's."""
    schema = {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "score": {"type": "number", "maximum": 0.5}}}}}}
    first = instance_for(schema, "answer")
    first["items"].append("changed")
    first["items"][0]["name"] = "changed"
    second = instance_for(schema, "answer")
    assert second == instance_for(schema, "answer") and second is not first
    assert second["items"] == [{"name": second["items"][0]["name"], "score": 0.25}]
    assert second["items"][0]["name"].startswith(PLACEHOLDER_MARK)
    # Another schema with the same text in another key order is the same schema.
    assert instance_for(dict(reversed(list(schema.items()))), "answer") == second
    # Values JSON cannot hold in 64 bits are built each time, not lost.
    big = {"type": "integer", "minimum": 2 ** 70}
    assert instance_for(big) == instance_for(big) == 2 ** 70


@pytest.mark.parametrize("task", [
    "John Smith, CEO at Acme Corp, wants the enterprise plan",
    "Qualify this lead: Jane Doe, VP Sales at Initech, interested in the pro tier",
    "Someone emailed us about pricing",
])
def test_every_contract_template_is_met_by_placeholders_that_say_so(task):
    from sigil_core.builtin.contracts import templates

    for contract in templates():
        output = json.loads(_ask("reason", {"task": task}, schema=contract_schema(contract)))
        result = check_contract(output, contract)
        assert result.success, (contract.name, result.problems)
        assert result.placeholders, contract.name


def test_a_plan_follows_the_contracts_suggested_steps():
    from sigil_core.builtin.contracts import templates

    lead = next(c for c in templates() if c.name == "lead_qualification")
    plan = plan_for("anything at all", {"suggested_steps": lead.suggested_steps})
    assert [s["name"] for s in plan["steps"]] == [s["name"] for s in lead.suggested_steps]
    assert plan["steps"][2]["dependencies"] == ["research_lead", "assess_bant"]


# --------------------------------------------------------------------------- no self-quoting


def _walk_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


PROMPT = "Summarise the quarterly numbers for the board and flag every risk you see"


@pytest.mark.parametrize("purpose", ["route", "plan", "reason", "react_step", "answer",
                                     "contract_feedback", "extract", "memory_filter",
                                     "create_agent", "unknown_purpose"])
@pytest.mark.parametrize("strategy", [None, "chain_of_thought"])
def test_no_answer_nests_its_own_prompt(purpose, strategy):
    """Feed each answer back as the next call's earlier result (as a run does, step after
    step): the task never appears twice, and answers do not grow."""
    hints = {"task": PROMPT, "step": "execute_task", "step_description": "Carry out the request",
             "strategy": strategy, "dependency_outputs": {}, "memories": [], "tools": []}
    previous = ""
    for _ in range(3):
        answer = _ask(purpose, hints, prompt=f"{PROMPT}\n\nEarlier result: {previous}")
        try:
            text = "\n".join(_walk_strings(json.loads(answer)))
        except ValueError:
            text = answer
        assert text.count(PROMPT) <= 1 and text.count(PROMPT[:30]) <= 1, answer
        assert previous == "" or len(answer) <= len(previous) + 1, (previous, answer)
        hints["dependency_outputs"] = {"previous_step": answer}
        previous = answer


async def test_the_provider_reports_offline_usage():
    request = LLMRequest(messages=[{"role": "user", "content": "hi"}], purpose="answer",
                         hints={"task": "hi"})
    response = await OfflineProvider().complete(request)
    assert response.model.startswith("offline:") and "offline model" in response.text


def test_a_callers_draft_is_the_answer_and_no_plugin_asks_which_provider_runs():
    from pathlib import Path

    draft = {"name": "mailer", "description": "Sends mail", "contract": None}
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert json.loads(_ask("create_agent", {"task": "x", "draft": draft}, schema=schema)) == draft
    # The offline model answers like a model; plugins do not branch on it.
    root = Path(__file__).resolve().parents[1]
    for path in [*root.glob("plugins/*/sigil_*/**/*.py"), *root.glob("sigil_core/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "is_offline" not in text, path
