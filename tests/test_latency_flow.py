"""Where a user waits (issue 20, part 1): the lead example's calls and what waits on what.

Read from the session's events, never from wall-clock times: how many LLM calls, whether
anything calls the model after the last step, whether the plan is made while the router's call
is in flight, and that the facts to remember ride on the final step's call.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from core_cli import LEAD_TASK

from sigil_core import hookimpl
from sigil_core.builtin.offline import respond
from sigil_core.config import load_config
from sigil_core.memory.phases import FOLDED_KEY
from sigil_core.model import OrchestrationResult
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.testing import ScriptedProvider, make_host

RESEARCH = "Research the market for AI meeting assistants and summarise the key players"


def journal(cwd: Path, session: str) -> list[dict]:
    path = cwd / "outputs" / "sessions" / f"{session}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def calls(events: list[dict]) -> list[dict]:
    return [e for e in events if e["operation"] == "llm_call" and e["level"] == "debug"]


def index_of(events: list[dict], pred) -> int:
    return next(i for i, e in enumerate(events) if pred(e))


# --------------------------------------------------------------------------- the lead example


def test_lead_example_makes_at_most_seven_calls_and_none_after_its_last_step(sigil):
    proc = sigil("orchestrate", "--session", "lead", LEAD_TASK)
    assert proc.returncode == 0, proc.stderr
    events = journal(sigil.cwd, "lead")
    made = calls(events)
    assert len(made) <= 7, [c["metadata"]["purpose"] for c in made]

    plan = next(e for e in events if e["operation"] == "create_plan"
                and e["message"].startswith("Completed"))
    steps = plan["metadata"]["plan"]["steps"]
    # No step that only formats what others wrote, none that fetches memories: the last step
    # answers in the contract's format, and the first ones run side by side.
    assert [s["name"] for s in steps] == ["research_lead", "assess_bant",
                                          "generate_recommendation"]
    assert [s["dependencies"] for s in steps] == [[], [], ["research_lead", "assess_bant"]]
    assert steps[-1]["needs_contract"]

    # Nothing calls the model once the last step is done: no formatting call, and the memory
    # extraction rode on the final step's own call.
    final_done = index_of(events, lambda e: e["operation"] == "execute_step"
                          and e["metadata"]["step_name"] == "generate_recommendation")
    assert all(events.index(c) < final_done for c in made)
    extracted = next(e for e in events if e["operation"] == "extract_memories"
                     and e["message"].startswith("Completed"))
    assert extracted["metadata"]["folded"] is True
    assert extracted["metadata"]["facts_extracted"] >= 1
    assert "tokens_used" not in extracted  # no call of its own
    assert "extract" not in [c["metadata"]["purpose"] for c in made]
    record = json.loads((sigil.sessions / "lead.json").read_text())
    # The contract still sees only its deliverables.
    assert FOLDED_KEY not in record["result"]["output"]
    assert record["result"]["validation"]["success"] is True


def test_research_example_plans_while_the_router_asks_the_model(sigil):
    # The offline model answers at once unless told to take time, as a real model does.
    proc = sigil("orchestrate", "--session", "research", RESEARCH,
                 env={"SIGIL_OFFLINE_LATENCY_MS": "300"})
    assert proc.returncode == 0, proc.stderr
    events = journal(sigil.cwd, "research")
    routed = index_of(events, lambda e: e["operation"] == "route_request"
                      and e["message"].startswith("Completed"))
    assert "route" in [c["metadata"]["purpose"] for c in calls(events)]
    started = index_of(events, lambda e: e["operation"] == "create_plan"
                       and e["message"].startswith("Starting"))
    assert started < routed
    plan = next(e for e in events if e["operation"] == "create_plan"
                and e["message"].startswith("Completed"))
    assert plan["metadata"]["speculative"] is True
    # The speculative plan is the run's plan: planned once, executed.
    assert len([e for e in calls(events) if e["metadata"]["purpose"] == "plan"]) == 1
    assert json.loads((sigil.sessions / "research.json").read_text())["result"]["success"]


# --------------------------------------------------------------------------- in process


class Script:
    """The offline model's answers, except where a test says otherwise (by purpose)."""

    def __init__(self, **overrides) -> None:
        self.overrides = overrides

    def __call__(self, request):
        override = self.overrides.get(request.purpose)
        if override is not None:
            answer = override(request)
            if answer is not None:
                return answer
        text = respond(request)
        return json.loads(text) if request.schema else text


def memory_host(provider, *plugins):
    host = make_host(provider, *plugins, entry_points=True)
    if "sqlite" not in host.registry("memory_backends"):
        pytest.skip("needs the memory_sqlite plugin (memory extraction)")
    return host


async def run_lead(host, session: str):
    return await Orchestrator(load_config(), host).run(RunOptions(task=LEAD_TASK,
                                                                  session=session))


async def stored(host) -> list[str]:
    from sigil_core.memory import open_store

    store = await open_store(load_config(), host)
    try:
        return sorted(m.content for m in await store.list())
    finally:
        await store.close()


GOOD = {"score": 80, "tier": "hot", "recommended_action": "Book a demo with the CEO this week",
        "bant_assessment": {"budget": "b", "authority": "CEO", "need": "n", "timeline": "t"}}


def fact(text: str) -> dict:
    return {"content": text, "type": "fact", "confidence": 0.9, "category": "acme"}


def final_answer(*answers):
    """The final step's answers in turn (requests whose schema asks for the facts)."""
    queue = list(answers)

    def answer(request):
        if request.schema and FOLDED_KEY in request.schema.get("properties", {}):
            return queue.pop(0)
        return None

    return answer


async def test_facts_come_from_the_final_steps_answer_without_a_call(sigil_home):
    provider = ScriptedProvider(default=Script(reason=final_answer(
        {**GOOD, FOLDED_KEY: [fact("Acme Corp wants the enterprise plan")]})))
    host = memory_host(provider)
    outcome = await run_lead(host, "folded")
    assert outcome.exit_code == 0
    assert outcome.result.output == GOOD
    assert "extract" not in [r.purpose for r in provider.requests]
    assert await stored(host) == ["Acme Corp wants the enterprise plan"]


async def test_an_answer_without_facts_gets_the_extraction_call(sigil_home):
    provider = ScriptedProvider(default=Script(
        reason=final_answer(dict(GOOD)),
        extract=lambda r: {"facts": [fact("John Smith is the CEO of Acme Corp")]}))
    host = memory_host(provider)
    outcome = await run_lead(host, "unfolded")
    assert outcome.exit_code == 0
    purposes = [r.purpose for r in provider.requests]
    assert purposes.count("extract") == 1 and purposes[-1] == "extract"
    assert await stored(host) == ["John Smith is the CEO of Acme Corp"]


class Checklist:
    """A contract whose rule no JSON Schema keyword says, so only validation catches it."""

    plugin_name = "checklist"

    @hookimpl
    def sigil_register_contracts(self, register):
        from sigil_core.model import Contract, Deliverable

        contract = Contract(name="checklist", description="A launch checklist", deliverables=[
            Deliverable("items", "array", "What to do", rules=["'sign-off' in value"])],
            failure_strategy="retry", max_retries=2)
        contract.keywords = ["checklist"]
        register(contract)


async def test_a_retried_final_step_stores_the_facts_of_the_attempt_that_passed(sigil_home):
    provider = ScriptedProvider(default=Script(reason=final_answer(
        {"items": ["print flyers"], FOLDED_KEY: [fact("The launch needs flyers")]},
        {"items": ["sign-off"], FOLDED_KEY: [fact("The launch needs a sign-off")]})))
    host = memory_host(provider, Checklist())
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task="Write the checklist for the product launch", session="retried"))
    assert outcome.exit_code == 0, outcome.result.error
    assert outcome.result.validation.attempt == 2
    assert outcome.result.output == {"items": ["sign-off"]}
    assert await stored(host) == ["The launch needs a sign-off"]
    assert "extract" not in [r.purpose for r in provider.requests]


class AnswersQuestions:
    """An intent handler: answers what the router calls a simple query."""

    plugin_name = "answers_questions"

    @hookimpl
    def sigil_handle_intent(self, run, task, route):
        if route.intent != "simple_query":
            return None
        return OrchestrationResult(session_id=run.session_id, success=True, task=task,
                                   output="an answer")


def routed(intent: str):
    return lambda request: {"intent": intent, "complexity": 0.2, "rationale": "scripted"}


class SlowRoutes(ScriptedProvider):
    """The router's call takes a while, as a model's does (the others answer at once)."""

    async def complete(self, request):
        if request.purpose == "route":
            await asyncio.sleep(0.3)
        return await super().complete(request)


async def test_a_plan_made_while_routing_is_dropped_when_a_handler_answers(sigil_home):
    provider = SlowRoutes(default=Script(route=routed("simple_query")))
    host = make_host(provider, AnswersQuestions())
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task="Which plan suits a team of five?", session="dropped"))
    assert outcome.exit_code == 0 and outcome.result.output == "an answer"
    events = journal(Path.cwd(), "dropped")
    plan_started = index_of(events, lambda e: e["operation"] == "create_plan")
    routed_at = index_of(events, lambda e: e["operation"] == "route_request"
                         and e["message"].startswith("Completed"))
    assert plan_started < routed_at
    dropped = [e for e in events if e["message"].startswith("Speculative plan not used")]
    assert len(dropped) == 1 and dropped[0]["metadata"]["intent"] == "simple_query"
    # Its call was made and is booked, not lost.
    summary = json.loads((Path.cwd() / "outputs" / "sessions" / "dropped.json").read_text())
    assert summary["token_summary"]["by_component"]["planner"] > 0
    assert not [e for e in events if e["operation"] == "execute_plan"]


class FastRouter:
    """Routes without a model call."""

    plugin_name = "fast_router"

    @hookimpl(tryfirst=True)
    def sigil_route(self, run, task):
        from sigil_core.model import RouteDecision

        return RouteDecision("execute_task", 0.4, "executor", "chain_of_thought", "rule", "rule")


async def test_a_route_without_a_model_call_is_not_speculated_on(sigil_home):
    provider = ScriptedProvider(default=Script())
    host = make_host(provider, FastRouter())
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task=LEAD_TASK, session="fast"))
    assert outcome.exit_code == 0
    events = journal(Path.cwd(), "fast")
    routed_at = index_of(events, lambda e: e["operation"] == "route_request"
                         and e["message"].startswith("Completed"))
    plan = [i for i, e in enumerate(events) if e["operation"] == "create_plan"]
    assert plan and min(plan) > routed_at
    assert "speculative" not in (events[plan[-1]].get("metadata") or {})


async def test_the_embedder_loads_while_the_router_waits_for_the_model(sigil_home, monkeypatch):
    from sigil_core import orchestrator

    loads: list[object] = []
    monkeypatch.setattr(orchestrator, "preload_embedder", lambda config, run: loads.append(run))
    provider = SlowRoutes(default=Script(route=routed("execute_task")))
    host = memory_host(provider)
    host.unregister("router_default")  # the builtin router asks the model
    outcome = await run_lead(host, "preload")
    assert outcome.exit_code == 0
    assert len(loads) == 1  # once, while the route's call was in flight
    assert "route" in [r.purpose for r in provider.requests]

    # A route that needs no call leaves no wait to fill: retrieval, right after it, loads it.
    loads.clear()
    outcome = await Orchestrator(load_config(), memory_host(ScriptedProvider(
        default=Script()))).run(RunOptions(task=LEAD_TASK, session="fast_route"))
    assert outcome.exit_code == 0 and loads == []


async def test_a_run_opens_its_memory_store_once_and_closes_it_as_it_ends(sigil_home,
                                                                          monkeypatch):
    """Retrieve and extract share the run's handle (a store's last handle closed closes the
    file: runs one after another opened and closed it twice each); it is closed with the run."""
    from sigil_core.memory import phases

    opened: list = []
    closed: list = []
    real_open = phases.open_store

    async def counting_open(*args, **kwargs):
        store = await real_open(*args, **kwargs)
        opened.append(store)
        real_close = store.close

        async def close():
            closed.append(store)
            await real_close()

        store.close = close
        return store

    monkeypatch.setattr(phases, "open_store", counting_open)
    provider = ScriptedProvider(default=Script(reason=final_answer(
        {**GOOD, FOLDED_KEY: [fact("Acme Corp wants the enterprise plan")]},
        {**GOOD, FOLDED_KEY: [fact("Acme Corp has 500 seats")]})))
    host = memory_host(provider)
    for session in ("first", "second"):
        outcome = await run_lead(host, session)
        assert outcome.exit_code == 0
    assert len(opened) == 2  # one a run, used by its retrieval and its extraction
    assert closed == opened
    assert await stored(host) == ["Acme Corp has 500 seats", "Acme Corp wants the enterprise plan"]
    events = [json.loads(line) for line in
              (Path("outputs") / "sessions" / "second.jsonl").read_text().splitlines()]
    done = {e["operation"] for e in events if e["message"].startswith("Completed")}
    assert {"retrieve_context", "extract_memories"} <= done, done
