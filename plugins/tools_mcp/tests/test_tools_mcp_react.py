"""The react strategy inside a real core Run: offline, and with a scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest
import sigil_tools_mcp.plugin
from sigil_tools_mcp.react import ReactStrategy

from sigil_core import PlanStep, Run, StepContext, StrategyError
from sigil_core.testing import ScriptedProvider, make_run


def scripted(decisions: list[dict], input_tokens: int = 60) -> ScriptedProvider:
    """A model answering each call with the next scripted decision (sent as JSON); each call's
    prompt counts ``input_tokens``."""
    return ScriptedProvider(decisions, input_tokens=input_tokens)


def prompt(model: ScriptedProvider, call: int) -> str:
    """The last message of the model's ``call``-th request."""
    return str(model.requests[call].messages[-1]["content"])


def react_run(provider: ScriptedProvider | None = None, budget: int = 50_000) -> Run:
    """A run with this plugin; the offline model when no provider is given."""
    run: Run = make_run(sigil_tools_mcp.plugin, provider=provider, budget=budget,
                        session_id="sess_react")
    return run


def step_and_context(description: str, tools: list[str], task: str | None = None):
    step = PlanStep(name="work", description=description, complexity="critical",
                    tools_required=tools)
    return step, StepContext(task=task or description, step=step)


def tool_events(run: Run) -> list:
    return [e for e in run.bus.events if e.component == "tools"]


async def test_offline_react_calls_the_step_tools_with_arguments_from_the_text(sigil_home):
    run = react_run()
    step, context = step_and_context("Compute (17 + 4) * 3 and give the time in Tokyo",
                                     ["calculator", "current_time"])
    result = await ReactStrategy().execute(run, step, context)

    assert "63" in result.output and "Asia/Tokyo" in result.output
    assert result.metadata["tools_called"] == ["calculator", "current_time"]
    assert result.tool_params == {"calculator": {"expression": "(17 + 4) * 3"},
                                  "current_time": {"timezone": "Asia/Tokyo"}}
    completed = [e for e in tool_events(run) if e.message.startswith("Completed")]
    assert [e.operation for e in completed] == ["calculator", "current_time"]
    # Arguments and result are in the journal: a resumed session reuses the call.
    assert completed[0].metadata == {"tool_name": "calculator", "tool_server": "builtin",
                                     "results_count": 1,
                                     "arguments": {"expression": "(17 + 4) * 3"},
                                     "result": {"expression": "(17 + 4) * 3", "result": 63}}
    assert completed[0].duration_ms is not None


async def test_offline_react_skips_a_tool_it_cannot_fill(sigil_home):
    run = react_run()
    step, context = step_and_context("Tell me what day it is", ["calculator", "current_time"])
    result = await ReactStrategy().execute(run, step, context)
    assert result.metadata["tools_called"] == ["current_time"]
    assert result.metadata["not_called"] == ["calculator"]
    assert [e.operation for e in tool_events(run)] == ["current_time", "current_time"]


async def test_model_sees_tool_errors_and_recovers(sigil_home):
    model = scripted([
        {"thought": "compute", "action": "calculator", "action_input": {"expression": "2 +"}},
        {"thought": "fix it", "action": "calculator", "action_input": {"expression": "2 + 2"}},
        {"thought": "done", "action": "final_answer", "answer": "2 + 2 is 4"},
    ])
    run = react_run(model)
    step, context = step_and_context("Add two and two", ["calculator"])
    result = await ReactStrategy().execute(run, step, context)

    assert result.output == "2 + 2 is 4"
    assert result.metadata["iterations"] == 3 and result.metadata["stopped"] == "answer"
    assert [c["ok"] for c in result.metadata["tool_calls"]] == [False, True]
    assert "Observation 1: error TOOL_002" in prompt(model, 1)
    assert 'Observation 2: {"expression": "2 + 2", "result": 4}' in prompt(model, 2)
    failed = [e for e in tool_events(run) if e.message.startswith("Failed")]
    assert failed[0].error_info.error_code == "TOOL_002"


async def test_invalid_arguments_from_the_model_are_tool_005_observations(sigil_home):
    model = scripted([
        {"thought": "t", "action": "calculator", "action_input": {"expr": "1"}},
        {"thought": "t", "action": "final_answer", "answer": "gave up"},
    ])
    run = react_run(model)
    step, context = step_and_context("Add", ["calculator"])
    result = await ReactStrategy().execute(run, step, context)
    assert result.output == "gave up"
    assert "error TOOL_005" in prompt(model, 1)


async def test_repeating_the_same_call_ends_the_loop(sigil_home):
    call = {"thought": "t", "action": "calculator", "action_input": {"expression": "1+1"}}
    model = scripted([call, call, call])
    run = react_run(model)
    step, context = step_and_context("Add one and one", ["calculator"])
    result = await ReactStrategy().execute(run, step, context)
    assert result.metadata["stopped"] == "repeated_action"
    assert len(tool_events(run)) == 2  # one call: a start and a completion event
    assert "calculator" in result.output or result.output


async def test_iterations_are_bounded_by_config(sigil_home: Path):
    (sigil_home / "config.yaml").write_text("react:\n  max_iterations: 2\n")
    model = scripted([
        {"thought": "t", "action": "calculator", "action_input": {"expression": f"{i}+1"}}
        for i in range(5)
    ])
    run = react_run(model)
    step, context = step_and_context("Count", ["calculator"])
    result = await ReactStrategy().execute(run, step, context)
    assert result.metadata["iterations"] == 2 and result.metadata["stopped"] == "max_iterations"
    assert len(model.answers) == 3


async def test_a_budget_share_too_small_for_one_iteration_fails_the_strategy(sigil_home):
    run = react_run(scripted([]), budget=1_000)  # reasoning share: 450 tokens
    step, context = step_and_context("Compute 1+1", ["calculator"])
    with pytest.raises(StrategyError, match="reasoning budget share"):
        await ReactStrategy().execute(run, step, context)


async def test_the_loop_stops_when_the_budget_share_runs_out(sigil_home):
    calls = [{"thought": "t", "action": "calculator", "action_input": {"expression": f"{i}*2"}}
             for i in range(6)]
    model = scripted(calls, input_tokens=700)
    run = react_run(model, budget=3_000)  # reasoning share 1,350: room for one iteration
    step, context = step_and_context("Double things", ["calculator"])
    result = await ReactStrategy().execute(run, step, context)
    assert result.metadata["stopped"] == "budget" and result.metadata["iterations"] == 1
    assert run.budget.by_component["reasoning"] <= 1_350
