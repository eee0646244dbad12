"""Intent handlers through the real hooks: simple answers, creating and modifying agents."""

from __future__ import annotations

import pytest
import yaml

from sigil_core import OrchestrationResult, UsageError
from sigil_core.testing import ScriptedProvider

AGENT_FIELDS = {"name", "description", "instructions", "tools", "contract",
                "strategy_preferences", "version"}


async def _route_and_handle(run, task: str):
    async with run.operation("router", "route_request"):
        route = await run.host.call_first("sigil_route", run=run, task=task)
    return route, await run.host.call_first("sigil_handle_intent", run=run, task=task,
                                            route=route)


async def test_simple_query_is_answered_in_one_call_after_a_fast_route(rd_make_run) -> None:
    run = rd_make_run("Who wrote Pride and Prejudice?")
    route, result = await _route_and_handle(run, run.ctx.task)
    assert route.source == "fast_path" and route.handler == "direct_answer"
    assert isinstance(result, OrchestrationResult) and result.success
    assert result.plan is None and result.validation is None
    # The offline model says what it cannot do in one line; it does not echo the question.
    assert result.output.startswith("[offline placeholder]")
    assert "Pride and Prejudice" not in result.output
    summary = run.summary()
    assert summary.llm_calls == 1 and summary.by_phase == {"execute": summary.total_tokens}


async def test_simple_query_routed_by_the_llm_takes_two_calls(rd_make_run) -> None:
    provider = ScriptedProvider(by_purpose={
        "route": lambda r: {"intent": "simple_query", "complexity": 0.1, "rationale": "fact"},
        "answer": lambda r: "Paris.",
    })
    run = rd_make_run("capital france", provider=provider)
    route, result = await _route_and_handle(run, run.ctx.task)
    assert route.source == "llm"
    assert result.output == "Paris."
    assert [r.purpose for r in provider.requests] == ["route", "answer"]


async def test_complex_question_and_tasks_go_to_the_full_flow(rd_make_run) -> None:
    provider = ScriptedProvider(by_purpose={"route": lambda r: {
        "intent": "simple_query", "complexity": 0.8, "rationale": "needs research"}})
    run = rd_make_run("why inflation", provider=provider, router={"fast_path": False})
    route, result = await _route_and_handle(run, run.ctx.task)
    assert route.handler == "executor" and result is None
    run = rd_make_run("Research market trends for AI startups", router={})
    route, result = await _route_and_handle(run, run.ctx.task)
    assert route.intent == "execute_task" and result is None


async def test_create_agent_offline_parses_validates_and_saves(rd_make_run, sigil_home) -> None:
    task = "Create an agent named lead_scout that qualifies inbound sales leads using BANT"
    run = rd_make_run(task)
    route, result = await _route_and_handle(run, task)
    assert route.intent == "create_agent" and result.success
    path = sigil_home / "agents" / "lead_scout.yaml"
    saved = yaml.safe_load(path.read_text())
    assert set(saved) == AGENT_FIELDS
    assert saved["version"] == 1
    assert saved["contract"] == "lead_qualification"  # the registered template for leads
    assert saved["description"] == "Qualifies inbound sales leads using BANT"
    assert "agent that qualifies inbound sales leads" in saved["instructions"]
    assert result.output["path"] == str(path)
    # One call like with any model: the offline model returns the local parse it was offered.
    assert run.summary().llm_calls == 1


async def test_create_agent_with_a_model_is_one_call_and_drops_inventions(
        rd_make_run, sigil_home) -> None:
    definition = {
        "name": "Mail Summarizer!", "description": "Summarizes the day's e-mail",
        "instructions": "Read the inbox and write a five-line digest.",
        "tools": ["imap_reader"], "contract": None, "strategy_preferences": ["direct", "magic"],
    }
    provider = ScriptedProvider(by_purpose={"create_agent": lambda r: definition})
    task = "Build a new assistant that summarizes my daily emails"
    run = rd_make_run(task, provider=provider)
    _route, result = await _route_and_handle(run, task)
    assert [r.purpose for r in provider.requests] == ["create_agent"]
    assert provider.requests[0].hints["task"] == task
    # The model's name breaks the rules: a valid one is derived from the request.
    name = result.output["name"]
    assert name == "summarizes_daily_emails"
    saved = yaml.safe_load((sigil_home / "agents" / f"{name}.yaml").read_text())
    assert saved["instructions"] == "Read the inbox and write a five-line digest."
    assert saved["tools"] == [] and saved["strategy_preferences"] == ["direct"]
    assert any("imap_reader" in n for n in result.notes)


@pytest.mark.parametrize("task", [
    "Create an agent named ../../etc/passwd that reads files",
    "Create an agent called Bad/Name that helps",
    "Create an agent named researcher that researches",  # taken (builtin)
    "build an agent",  # says nothing about what it should do
])
async def test_bad_create_requests_write_nothing(rd_make_run, sigil_home, task) -> None:
    run = rd_make_run(task)
    with pytest.raises(UsageError):
        await _route_and_handle(run, task)
    assert not (sigil_home / "agents").exists() or not list((sigil_home / "agents").rglob("*.yaml"))


async def test_modify_keeps_the_previous_version(rd_make_run, sigil_home) -> None:
    task = "Create an agent named digest that writes a weekly newsletter from RSS feeds"
    await _route_and_handle(rd_make_run(task), task)
    task = "Modify the digest agent to always include a section on AI news"
    run = rd_make_run(task)
    route, result = await _route_and_handle(run, task)
    assert route.intent == "modify_agent"
    current = yaml.safe_load((sigil_home / "agents" / "digest.yaml").read_text())
    previous = yaml.safe_load((sigil_home / "agents" / ".history" / "digest.v1.yaml").read_text())
    assert current["version"] == 2 and previous["version"] == 1
    assert current["instructions"].endswith("Always include a section on AI news.")
    assert "AI news" not in previous["instructions"]
    assert result.output["changed"] == ["instructions"]


async def test_modify_a_builtin_saves_it_as_version_one(rd_make_run, sigil_home) -> None:
    task = "Update lead_qualifier to prefer direct reasoning and use the research_report contract"
    run = rd_make_run(task)
    _route, _result = await _route_and_handle(run, task)
    current = yaml.safe_load((sigil_home / "agents" / "lead_qualifier.yaml").read_text())
    previous = yaml.safe_load(
        (sigil_home / "agents" / ".history" / "lead_qualifier.v1.yaml").read_text())
    assert current["contract"] == "research_report" and previous["contract"] == "lead_qualification"
    assert current["strategy_preferences"][0] == "direct"
    assert current["version"] == 2
    assert run.summary().llm_calls == 0  # exact edits need no model


async def test_modify_with_a_model_sends_the_current_definition(rd_make_run,
                                                                sigil_home) -> None:
    def edit(request):
        agent = dict(request.hints["agent"])
        agent["instructions"] += " Write in British English."
        return agent

    provider = ScriptedProvider(by_purpose={"modify_agent": edit})
    task = "From now on the researcher agent should write in British English, update it"
    run = rd_make_run(task, provider=provider)
    _route, _result = await _route_and_handle(run, task)
    assert [r.purpose for r in provider.requests] == ["modify_agent"]
    current = yaml.safe_load((sigil_home / "agents" / "researcher.yaml").read_text())
    assert current["instructions"].endswith("Write in British English.")
    assert current["contract"] == "research_report"  # kept


@pytest.mark.parametrize("task,message", [
    ("Modify the ghost agent to be nicer", "unknown agent 'ghost'"),
    ("Modify the ../x agent to be nicer", "invalid agent name"),
    ("Update the researcher agent to use the research_report contract", "nothing to change"),
])
async def test_bad_modify_requests(rd_make_run, sigil_home, task, message) -> None:
    run = rd_make_run(task)
    with pytest.raises(UsageError, match=message):
        await _route_and_handle(run, task)
    assert not (sigil_home / "agents").exists()


async def test_broken_agent_file_is_reported_and_left_alone(rd_make_run, sigil_home) -> None:
    folder = sigil_home / "agents"
    folder.mkdir()
    broken = folder / "digest.yaml"
    broken.write_text("name: digest\ntools: [unclosed\n")
    task = "Modify the digest agent to always include a section on AI news"
    run = rd_make_run(task)
    with pytest.raises(UsageError, match="not valid YAML"):
        await _route_and_handle(run, task)
    assert broken.read_text() == "name: digest\ntools: [unclosed\n"
    assert not (folder / ".history").exists()
