"""The engine in process: DAG concurrency, re-planning, structured-output re-ask, budget limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from core_cli import LEAD_TASK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigil_core import hookimpl
from sigil_core.budget import BudgetTracker
from sigil_core.config import load_config
from sigil_core.errors import BudgetExhaustedError, StructuredOutputError
from sigil_core.llm import LLMRequest, LLMResponse
from sigil_core.model import ExecutionContext, Plan, PlanStep, TokenUsage, utcnow
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.plugins import PluginHost
from sigil_core.run import Run, current_run


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    for var in ("SIGIL_DISABLE_PLUGINS", "SIGIL_TOKEN_BUDGET", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def host_only_builtins() -> PluginHost:
    return PluginHost(load_entry_points=False).load()


def events_of(tmp_path: Path, session: str) -> list[dict]:
    path = tmp_path / "outputs" / "sessions" / f"{session}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_independent_steps_overlap_and_dependent_steps_wait(env, monkeypatch):
    monkeypatch.setenv("SIGIL_OFFLINE_LATENCY_MS", "150")
    config = load_config()
    outcome = await Orchestrator(config, host_only_builtins()).run(
        RunOptions(task=LEAD_TASK, session="sess_dag"))
    assert outcome.exit_code == 0
    spans: dict[str, list[str]] = {}
    for e in events_of(env, "sess_dag"):
        step = (e.get("metadata") or {}).get("step_name")
        if e["component"] == "reasoning" and step and e["operation"] != "llm_call":
            if e["message"].startswith("Starting"):
                spans[step] = [e["timestamp"], None]
            elif e["message"].startswith("Completed"):
                spans[step][1] = e["timestamp"]
    bant, research = spans["assess_bant"], spans["research_lead"]
    # assess_bant and research_lead have no dependency: they run at the same time.
    assert bant[0] < research[1] and research[0] < bant[1]
    # generate_recommendation depends on both: it starts after both completed.
    assert spans["generate_recommendation"][0] >= max(bant[1], research[1])
    assert set(spans) == {"research_lead", "assess_bant", "generate_recommendation"}


class CyclicThenGoodPlanner:
    def __init__(self) -> None:
        self.feedback: list = []

    @hookimpl
    def sigil_plan(self, run, task, feedback):
        self.feedback.append(feedback)
        if feedback is None:
            return Plan(goal=task, steps=[
                PlanStep("a", "first", dependencies=["b"]),
                PlanStep("b", "second", dependencies=["a"]),
            ])
        return Plan(goal=task, steps=[PlanStep("only", "one step", complexity="simple",
                                               needs_contract=True)])


async def test_a_cyclic_plan_is_rejected_and_replanned_once(env):
    host = host_only_builtins()
    planner = CyclicThenGoodPlanner()
    host.register(planner, name="cyclic")
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task="Summarise the benefits of tea", session="sess_replan"))
    assert outcome.exit_code == 0
    assert planner.feedback[0] is None and "cycle" in planner.feedback[1]
    events = events_of(env, "sess_replan")
    assert any("Plan rejected, re-planning once" in e["message"] for e in events)
    assert [s.name for s in outcome.result.plan.steps] == ["only"]


class AlwaysUnknownDependency:
    @hookimpl
    def sigil_plan(self, run, task):
        return Plan(goal=task, steps=[PlanStep("a", "x", dependencies=["ghost"])])


async def test_a_plan_rejected_twice_fails_the_run_clearly(env):
    host = host_only_builtins()
    host.register(AlwaysUnknownDependency(), name="ghost")
    outcome = await Orchestrator(load_config(), host).run(RunOptions(task="Do a thing"))
    assert outcome.exit_code == 1
    assert "unknown step 'ghost'" in outcome.result.error.error_message
    assert outcome.result.error.error_code == "REASONING_002"


class ScriptedProvider:
    """Answers from a list, for gateway tests."""

    name = "scripted"
    priority = 1000

    def __init__(self, answers: list[str], input_tokens: int = 50) -> None:
        self.answers = list(answers)
        self.input_tokens = input_tokens
        self.requests: list[LLMRequest] = []

    def available(self, config) -> bool:
        return True

    def estimate_input_tokens(self, request) -> int:
        return self.input_tokens

    async def complete(self, request):
        self.requests.append(request)
        text = self.answers.pop(0)
        return LLMResponse(text, TokenUsage(self.input_tokens, 10, model="scripted:x"), "x")


def make_run(provider, budget: int = 10_000) -> Run:
    config = load_config()
    ctx = ExecutionContext("sess_t", "sess_t", "task", budget, utcnow())
    return Run(ctx, config, host_only_builtins(), provider)


async def test_malformed_structured_output_is_reasked_once(env):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    provider = ScriptedProvider(["not json at all", '```json\n{"n": 4}\n```'])
    run = make_run(provider)
    async with run.operation("planner", "create_plan"):
        result = await run.llm.generate("give n", schema=schema)
    assert result.value == {"n": 4} and result.calls == 2
    assert "could not be used" in provider.requests[1].messages[-1]["content"]
    assert run.summary().total_tokens == 120 and run.summary().llm_calls == 2


async def test_an_llm_call_event_carries_what_a_trace_span_needs(env):
    provider = ScriptedProvider(["fine"])
    run = make_run(provider)
    async with run.operation("reasoning", "direct") as op:
        await run.llm.generate("say fine", model="x-large", purpose="reason")
    call = next(e for e in run.bus.events if e.operation == "llm_call")
    assert call.parent_operation_id == op.operation_id and call.duration_ms >= 0
    assert {k: call.metadata[k] for k in ("provider", "model", "request_model", "stop_reason")} == {
        "provider": "scripted", "model": "scripted:x", "request_model": "x-large",
        "stop_reason": None}
    request, response = call.payload
    assert request.messages[0]["content"] == "say fine" and response.text == "fine"
    # The request and response stay in memory: the files never see prompt contents.
    assert "say fine" not in call.json_line() and "payload" not in call.json_line()


async def test_structured_output_fails_after_one_reask(env):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    run = make_run(ScriptedProvider(['{"n": "four"}', '{"m": 1}']))
    with pytest.raises(StructuredOutputError) as err:
        await run.llm.generate("give n", schema=schema)
    assert err.value.recoverable
    assert "'n' is a required property" in str(err.value)


async def test_a_call_that_cannot_fit_is_not_sent(env):
    provider = ScriptedProvider(["ok"], input_tokens=500)
    run = make_run(provider, budget=510)
    with pytest.raises(BudgetExhaustedError) as err:
        await run.llm.generate("hello")
    assert err.value.code == "TOKEN_001"
    assert provider.requests == []


async def test_max_tokens_is_capped_to_what_is_left(env):
    provider = ScriptedProvider(["ok"], input_tokens=100)
    run = make_run(provider, budget=400)
    await run.llm.generate("hello", max_tokens=5000)
    assert provider.requests[0].max_tokens == 300


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(total=st.integers(1, 5000),
       calls=st.lists(st.tuples(st.integers(0, 800), st.integers(1, 2000)), max_size=30))
def test_reservations_never_let_used_exceed_the_budget(total, calls):
    budget = BudgetTracker(total)
    for input_tokens, wanted in calls:
        try:
            res = budget.reserve("reasoning", input_tokens, wanted)
        except BudgetExhaustedError:
            assert budget.available - input_tokens < min(16, wanted)
            continue
        assert res.max_tokens <= wanted
        # A provider that reports exactly its estimate and at most max_tokens of output.
        output = min(wanted, res.max_tokens)
        budget.commit(res, TokenUsage(input_tokens, output))
        assert budget.used <= total
    assert budget.reserved == 0


def test_alerts_fire_once_at_80_and_95_percent():
    seen = []
    budget = BudgetTracker(1000, on_alert=lambda level, snap: seen.append((level, snap.used)))
    for _ in range(10):
        budget.charge("reasoning", 99)
    assert seen == [("warning", 891), ("critical", 990)]


async def test_concurrent_calls_cannot_overshoot_together(env):
    class Slow(ScriptedProvider):
        async def complete(self, request):
            await asyncio.sleep(0.01)
            return LLMResponse("x", TokenUsage(100, request.max_tokens), "x")

    run = make_run(Slow([], input_tokens=100), budget=1000)
    results = await asyncio.gather(*(run.llm.generate("q", max_tokens=300) for _ in range(6)),
                                   return_exceptions=True)
    assert any(isinstance(r, BudgetExhaustedError) for r in results)
    assert run.budget.used <= 1000


async def test_a_finished_run_is_freed_without_the_cyclic_collector(env, monkeypatch):
    """A run and its events go as the run ends, by reference counting: a reference cycle
    (the gateway's, an operation's or the budget alert's way back to the run) kept ~350
    objects a run alive until the collector's next full pass, which in a process running many
    runs (sigil batch, the worker) piled them up and made each pass cost 0.1-0.2 s."""
    import gc
    import weakref

    runs: list[weakref.ref[Run]] = []
    init = Run.__init__

    def recording_init(self: Run, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        runs.append(weakref.ref(self))

    monkeypatch.setattr(Run, "__init__", recording_init)
    config = load_config()
    host = host_only_builtins()
    await Orchestrator(config, host).run(RunOptions(task=LEAD_TASK, session="sess_warm"))
    gc.collect()
    gc.disable()
    try:
        outcome = await Orchestrator(config, host).run(
            RunOptions(task=LEAD_TASK, session="sess_freed"))
        assert outcome.exit_code == 0
        # The run's own tasks end, and the timers it left (its bus's flush timer, cancelled,
        # keeps the run's context until its due time, 100 ms at most).
        await asyncio.sleep(0.25)
        # Nor is it still the caller's current run (plugin problems found later went to it).
        assert current_run() is None
        assert len(runs) == 2 and runs[1]() is None
    finally:
        gc.enable()
    # While it lives, its parts reach it: the gateway, its operations, the budget's alerts.
    run = make_run(ScriptedProvider([]), budget=100)
    assert run.llm.run is run
    async with run.operation("reasoning", "step") as op:
        assert op.run is run
        run.budget.charge("reasoning", 85)
    assert [e.metadata["threshold"] for e in run.bus.events
            if e.operation == "budget"] == ["warning"]


async def test_code_outliving_its_run_finds_no_current_operation(env):
    """An operation refers to its run weakly: code the run started that outlives it (a thread
    still retrying a call after the run stopped) sees no current operation, rather than an
    operation whose ``run`` is gone."""
    import contextvars
    import gc

    from sigil_core.run import current_operation

    run = make_run(ScriptedProvider([]))
    async with run.operation("reasoning", "step"):
        later = contextvars.copy_context()  # what a thread started here would carry
        assert later.run(current_operation) is not None
    del run
    gc.collect()
    assert later.run(current_operation) is None
