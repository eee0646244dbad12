"""The strategy inside a real Sigil run: the core's step executor, gateway, budget and events.

A scripted provider answers the strategy's calls by rule, so the tree is known in advance:
every state gets three proposals "A", "B", "C" (prefixed by the parent's label), and a
thought is judged by its last letter (C sure, B likely, A impossible).
"""

import asyncio
import math
import uuid

import pytest
import sigil_reasoning_tot.plugin as tot_plugin
from sigil_reasoning_tot import mcts_plugin
from sigil_reasoning_tot.params import ToTParams, resolve
from sigil_reasoning_tot.strategy import value_confidence, vote_confidence

from sigil_core import Config, PlanStep, PluginHost, StepContext, TokenUsage
from sigil_core import testing as sigil_testing

JUDGE = {"A": "impossible", "B": "likely", "C": "sure"}


class ScriptedProvider(sigil_testing.ScriptedProvider):
    """The ToT rules above as the script (see the module docstring)."""

    priority = 0

    def __init__(self):
        super().__init__(default=self.answer, model="1")
        self.purposes = []

    def estimate_input_tokens(self, request):
        # The figures the budget tests were worked out with: a quarter of the characters + 4.
        return math.ceil(len(request.text()) / 4) + 4

    def answer(self, request):
        self.purposes.append(request.purpose)
        h = request.hints
        if request.purpose == "tot_propose":
            label = h["thoughts"][-1] if h["thoughts"] else ""
            return {"thoughts": [label + c for c in "ABC"][: h["k"]]}
        if request.purpose == "tot_value":
            return {"reason": "by rule", "judgement": JUDGE[h["thoughts"][-1][-1]]}
        if request.purpose == "tot_vote":
            lasts = [c[-1] for c in h["choices"]]
            # The choice whose last thought scores best (C > B > A), the first on ties.
            best = max(range(len(lasts)), key=lambda i: ("ABC".index(lasts[i][-1]), -i))
            return {"analysis": "by rule", "best_choice": best + 1}
        if request.purpose == "reason":
            path = " | ".join(h.get("thoughts", []))
            return ({"verdict": f"final: {path}"} if request.schema
                    else f"Reasoning: followed the path.\nAnswer: final: {path}")
        return f"unexpected {request.purpose}"


def make_run(provider=None, *, budget=256_000, section=None, entry_points=False,
             mcts_section=None):
    """A run with the strategies registered (or the installed plugins), through the public
    testing helpers; the config holds only the given sections (not the user's file)."""
    host = (sigil_testing.make_host(entry_points=True) if entry_points
            else sigil_testing.make_host(tot_plugin, mcts_plugin))
    config = Config()
    config.sections = {}
    if section is not None:
        config.sections["tree_of_thoughts"] = section
    if mcts_section is not None:
        config.sections["mcts"] = mcts_section
    sid = f"sess_{uuid.uuid4().hex[:12]}"
    return sigil_testing.make_run(provider=provider, config=config, host=host,
                                  task="Decide which launch plan to pursue", budget=budget,
                                  session_id=sid)


def step_context(name="pick_plan", schema=None, complexity="complex"):
    step = PlanStep(name=name, description="Weigh the options and pick one",
                    complexity=complexity)
    return step, StepContext(task="Decide which launch plan to pursue", step=step,
                             output_schema=schema)


async def reason(run, step, context):
    return await run.host.call_first("sigil_reason", run=run, step=step, context=context)


def events(run, message=None, operation=None):
    return [e for e in run.bus.events
            if (message is None or e.message.startswith(message))
            and (operation is None or e.operation == operation)]


# ------------------------------------------------------------------ the search in a run


async def test_value_search_follows_the_hand_computed_tree():
    provider = ScriptedProvider()
    run = make_run(provider, section={"method_evaluate": "value", "n_select_sample": 2,
                                      "depth": 2})
    step, context = step_context()
    result = await reason(run, step, context)

    # Level 1: A, B, C worth 0.001, 1, 20 -> keep C, B. Level 2: CA CB CC BA BB BC -> keep CC
    # and BC (tie at 20: the earlier, CC). The last level's thoughts are complete answers and
    # the step has no output schema: the chosen one, CC, is the output, with no further call.
    assert result.success and result.strategy == "tree_of_thoughts"
    assert result.output == "CC"
    assert result.confidence == pytest.approx(1.0)
    done = events(run, "Completed tree_of_thoughts")[0]
    assert done.metadata["branches_explored"] == 3
    assert done.metadata["chosen_path"] == ["C", "CC"]
    assert done.metadata["confidence"] == pytest.approx(1.0)
    assert done.metadata["step_name"] == "pick_plan"
    tree = {n["id"]: n for n in done.metadata["tree"]}
    assert len(tree) == 9 and tree["0.2.2"]["thought"] == "CC" and tree["0.2.2"]["selected"]
    assert provider.purposes.count("tot_propose") == 3
    assert provider.purposes.count("tot_value") == 9
    assert "reason" not in provider.purposes
    assert done.metadata["answered_from"] == "chosen_thought"
    # All calls are booked to the tree_of_thoughts operation.
    assert done.tokens_used.total_tokens == result.tokens_used.total_tokens > 0


async def test_branch_events_link_to_the_strategy_operation():
    run = make_run(ScriptedProvider(), section={"method_evaluate": "value", "depth": 2})
    step, context = step_context()
    await reason(run, step, context)
    start = events(run, "Starting tree_of_thoughts")[0]
    branches = events(run, "Exploring branch")
    assert [e.message for e in branches] == [
        "Exploring branch 1/1", "Exploring branch 1/2", "Exploring branch 2/2"]
    assert all(e.level == "debug" and e.component == "reasoning"
               and e.operation == "tree_of_thoughts" for e in branches)
    # The tree from ids alone: root under the strategy's operation, each child under its node.
    by_node = {e.metadata["node_id"]: e for e in branches}
    for e in branches:
        parent = e.metadata["parent_node_id"]
        expected = by_node[parent].operation_id if parent in by_node else start.operation_id
        assert e.parent_operation_id == expected
    assert [e.metadata["node_id"] for e in branches] == ["0", "0.2", "0.1"]
    assert [e.metadata["parent_node_id"] for e in branches] == [None, "0", "0"]
    calls = [e for e in run.bus.events if e.operation == "llm_call"]
    assert calls and all(e.parent_operation_id == start.operation_id for e in calls)


async def test_vote_search_and_confidence():
    provider = ScriptedProvider()
    run = make_run(provider, section={"method_evaluate": "vote", "n_evaluate_sample": 3,
                                      "n_select_sample": 1, "depth": 3})
    step, context = step_context()
    result = await reason(run, step, context)
    assert result.output == "CCC"
    assert result.confidence == pytest.approx(0.95)  # every vote for the chosen state
    assert provider.purposes.count("tot_vote") == 9  # 3 votes at each of 3 levels


class InFlightProvider(ScriptedProvider):
    """Counts, per purpose, how many calls were in flight together at most."""

    def __init__(self):
        super().__init__()
        self.current = {}
        self.peak = {}

    async def complete(self, request):
        p = request.purpose
        self.current[p] = self.current.get(p, 0) + 1
        self.peak[p] = max(self.peak.get(p, 0), self.current[p])
        await asyncio.sleep(0)  # a real call waits: the level's other calls start meanwhile
        try:
            return await super().complete(request)
        finally:
            self.current[p] -= 1


async def test_each_levels_proposals_and_votes_are_in_flight_together():
    provider = InFlightProvider()
    run = make_run(provider, section={"method_evaluate": "vote", "n_evaluate_sample": 3,
                                      "n_select_sample": 2, "depth": 2})
    step, context = step_context()
    await reason(run, step, context)
    # Level 2 expands the two kept states at once; each level's three votes go out together.
    assert provider.purposes == ["tot_propose", *["tot_vote"] * 3,
                                 *["tot_propose"] * 2, *["tot_vote"] * 3]
    assert provider.peak == {"tot_propose": 2, "tot_vote": 3}


@pytest.mark.parametrize("complexity,levels", [
    ("moderate", 1), ("complex", 1), ("critical", 2)])
async def test_levels_follow_the_steps_complexity_and_answers_need_no_extra_call(
        complexity, levels):
    provider = ScriptedProvider()
    run = make_run(provider)
    step, context = step_context(complexity=complexity)
    step.reasoning_strategy = "tree_of_thoughts"  # whatever the complexity would choose
    result = await reason(run, step, context)
    done = events(run, "Completed tree_of_thoughts")[0]
    assert done.metadata["levels"] == levels
    # Each level: the proposals, then one vote; the chosen last thought is the answer.
    assert provider.purposes == ["tot_propose", "tot_vote"] + (
        ["tot_propose", "tot_propose", "tot_vote"] if levels == 2 else [])
    assert result.output == "C" * levels


async def test_output_schema_gives_structured_output():
    run = make_run(ScriptedProvider(), section={"depth": 1})
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}},
              "required": ["verdict"]}
    step, context = step_context(schema=schema)
    result = await reason(run, step, context)
    assert result.output == {"verdict": "final: C"}


async def test_offline_provider_gives_a_sensible_answer_without_crashing():
    run = make_run()
    step, context = step_context()
    result = await reason(run, step, context)
    assert result.success and result.strategy == "tree_of_thoughts"
    assert isinstance(result.output, str) and result.output.strip()
    assert events(run, "Exploring branch")
    schema = {"type": "object", "properties": {"plan": {"type": "string"},
                                               "score": {"type": "integer"}},
              "required": ["plan", "score"]}
    step, context = step_context("scored", schema=schema)
    result = await reason(run, step, context)
    assert set(result.output) == {"plan", "score"}


# ------------------------------------------------------------------ budget


async def test_search_narrows_when_its_budget_share_runs_low():
    # The share pays for level 1 and one of the two level-2 branches, not the full tree.
    provider = ScriptedProvider()
    run = make_run(provider, budget=7_900, section={"method_evaluate": "value", "depth": 2,
                                                    "max_tokens": 64, "budget_share": 0.6})
    step, context = step_context()
    result = await reason(run, step, context)
    done = events(run, "Completed tree_of_thoughts")[0]
    assert result.success
    assert done.metadata["branches_explored"] == 2
    assert done.metadata["narrowed_levels"] == [2]
    assert [e.message for e in events(run, "Budget allows")] == [
        "Budget allows 1 of 2 branches at level 2"]
    assert result.output == "CC"  # the best branch was the one kept


async def test_search_that_cannot_afford_a_level_still_answers():
    run = make_run(ScriptedProvider(), budget=3_000,
                   section={"method_evaluate": "value", "max_tokens": 64})
    step, context = step_context()
    result = await reason(run, step, context)
    done = events(run, "Completed tree_of_thoughts")[0]
    assert result.success and result.strategy == "tree_of_thoughts"
    assert done.metadata["stopped_early"] == "limit"
    assert done.metadata["branches_explored"] == 0
    assert result.output == "final:"


class OverrunProvider(ScriptedProvider):
    """Reports a huge usage for the second proposal call, as a model that overran would."""

    async def complete(self, request):
        response = await super().complete(request)
        if self.purposes.count("tot_propose") == 2 and request.purpose == "tot_propose":
            response.usage = TokenUsage(response.usage.input_tokens, 59_500, model="scripted:1")
        return response


async def test_refused_calls_end_the_search_with_the_best_path_not_a_failure():
    run = make_run(OverrunProvider(), budget=60_000,
                   section={"method_evaluate": "value", "depth": 2})
    step, context = step_context()
    result = await reason(run, step, context)
    # Level 2's judgements and the final call are refused: the best state of level 1 answers.
    assert result.success and result.strategy == "tree_of_thoughts"
    done = events(run, "Completed tree_of_thoughts")[0]
    assert done.metadata["stopped_early"] == "BudgetExhaustedError"
    assert done.metadata["levels"] == 1
    assert result.output == "C"
    assert result.confidence <= 0.5


# ------------------------------------------------------------------ parameters


def test_params_precedence_step_over_agent_over_section():
    section = {"depth": 3, "n_select_sample": 4,
               "agents": {"analyst": {"depth": 5, "method_evaluate": "value"}},
               "steps": {"pick_plan": {"depth": 1}}}
    assert resolve(section) == ToTParams(depth=3, n_select_sample=4)
    assert resolve(section, agent="analyst").depth == 5
    p = resolve(section, agent="analyst", step="pick_plan")
    assert (p.depth, p.method_evaluate, p.n_select_sample) == (1, "value", 4)
    assert resolve(None) == ToTParams()


@pytest.mark.parametrize("section,message", [
    ({"depht": 2}, "tree_of_thoughts.depht is not a tree_of_thoughts setting"),
    ({"steps": {"s": {"n_select_sample": "five"}}},
     "tree_of_thoughts.steps.s.n_select_sample must be an integer"),
    ({"method_select": "best"}, "method_select must be one of greedy, sample"),
    ({"depth": 0}, "depth must be at least 1"),
    ({"agents": ["x"]}, "tree_of_thoughts.agents must be a mapping"),
])
def test_params_errors_name_the_key(section, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        resolve(section, step="s")


async def test_bad_config_falls_back_to_chain_of_thought_with_the_reason():
    run = make_run(section={"depht": 2})
    step, context = step_context()
    result = await reason(run, step, context)
    assert result.success and result.strategy == "chain_of_thought"
    warning = events(run, "Strategy tree_of_thoughts failed")[0]
    assert "depht" in warning.error_info.error_message


def test_confidence_scales():
    assert value_confidence(20, 1) == pytest.approx(1.0)
    assert value_confidence(60, 3) == pytest.approx(1.0)
    assert value_confidence(0.003, 3) == pytest.approx(0.0)
    assert 0.6 < value_confidence(1, 1) < 0.8
    assert value_confidence(0, 1) == 0.0
    assert vote_confidence(0, 3) == 0.5 and vote_confidence(3, 3) == pytest.approx(0.95)


def test_entry_point_registers_the_strategy(monkeypatch):
    monkeypatch.delenv("SIGIL_DISABLE_PLUGINS", raising=False)
    host = PluginHost(load_entry_points=True, disabled=()).load()
    assert "tree_of_thoughts" in host.registry("strategies")
    monkeypatch.setenv("SIGIL_DISABLE_PLUGINS", "reasoning_tot")
    host = PluginHost(load_entry_points=True).load()
    assert "tree_of_thoughts" not in host.registry("strategies")
    assert any(r.name == "reasoning_tot" and r.status == "disabled" for r in host.records)


# ------------------------------------------------------------------ reference fidelity


class GenerousProvider(ScriptedProvider):
    """Proposes more thoughts than asked for, one of them twice, as real models do."""

    def answer(self, request):
        if request.purpose == "tot_propose":
            self.purposes.append(request.purpose)
            label = request.hints["thoughts"][-1] if request.hints["thoughts"] else ""
            return {"thoughts": [label + c for c in "ABCAB"]}
        return super().answer(request)


@pytest.mark.parametrize("section, kept", [
    ({}, ["A", "B", "C", "A", "B"]),                               # the reference: all, dupes too
    ({"duplicate_thoughts": "drop"}, ["A", "B", "C"]),
    ({"max_proposals": 2}, ["A", "B"]),
])
async def test_propose_keeps_what_the_reference_keeps_unless_configured(section, kept):
    run = make_run(GenerousProvider(), section={"method_evaluate": "value", "depth": 1,
                                                "n_generate_sample": 3, **section})
    step, context = step_context()
    await reason(run, step, context)
    done = events(run, "Completed tree_of_thoughts")[0]
    assert [n["thought"] for n in done.metadata["tree"]] == kept


async def test_events_rebuild_the_tree_after_sampled_selection():
    run = make_run(ScriptedProvider(), section={
        "method_evaluate": "value", "method_select": "sample", "seed": 3, "depth": 3,
        "n_select_sample": 3})
    step, context = step_context()
    await reason(run, step, context)
    branches = events(run, "Exploring branch")
    done = events(run, "Completed tree_of_thoughts")[0]
    ops = [e.operation_id for e in branches]
    assert len(ops) == len(set(ops)) == done.metadata["branches_explored"]
    assert any(e.metadata["repeat"] for e in branches)  # some node was drawn twice
    strategy_op = done.operation_id
    known = {strategy_op, *ops}
    assert all(e.parent_operation_id in known for e in branches)
    # Every expanded node is in the tree, under the node its event's parent names.
    tree = {n["id"]: n for n in done.metadata["tree"]}
    by_op = {e.operation_id: e.metadata["node_id"] for e in branches}
    for e in branches:
        node = e.metadata["node_id"]
        if node == "0":
            assert e.parent_operation_id == strategy_op
        else:
            assert tree[node]["parent_id"] == by_op[e.parent_operation_id]


# ------------------------------------------------------------------ mcts


async def test_mcts_runs_critical_steps_and_follows_the_values():
    provider = ScriptedProvider()
    run = make_run(provider, mcts_section={"n_simulations": 4, "depth": 2, "c": 0.0,
                                           "concurrency": 1, "max_proposals": None})
    step, context = step_context(complexity="critical")
    result = await reason(run, step, context)
    assert result.success and result.strategy == "mcts"
    # c=0: greedy by value. Root -> A, B, C (C sure) -> CA, CB, CC -> CC is complete.
    assert result.output == "final: C | CC"
    done = events(run, "Completed mcts")[0]
    assert done.metadata["chosen_path"] == ["C", "CC"]
    assert done.metadata["simulations"] == 4
    tree = {n["id"]: n for n in done.metadata["tree"]}
    assert tree["0.2.2"]["thought"] == "CC" and tree["0.2.2"]["terminal"]
    assert tree["0.2"]["visits"] >= 3
    # Each expansion is an event under the node it grew from; simulations report visits/values.
    expansions = events(run, "Expanding node")
    ops = {e.operation_id for e in expansions}
    assert len(ops) == len(expansions) == done.metadata["branches_explored"]
    assert all(e.parent_operation_id in ops | {done.operation_id} for e in expansions)
    sims = events(run, "Simulation ")
    assert len(sims) == 4 and all("visits" in p for s in sims for p in s.metadata["path"])
    assert done.tokens_used.total_tokens == result.tokens_used.total_tokens > 0


async def test_mcts_simulations_shrink_with_the_reasoning_allocation():
    big = make_run(ScriptedProvider(), mcts_section={"n_simulations": 30, "depth": 3})
    small = make_run(ScriptedProvider(), budget=9_000,
                     mcts_section={"n_simulations": 30, "depth": 3})
    sims = []
    for run in (big, small):
        step, context = step_context(complexity="critical")
        result = await reason(run, step, context)
        assert result.success
        sims.append(events(run, "Completed mcts")[0].metadata["simulations"])
        assert run.budget.used <= run.budget.total
    assert sims[1] < sims[0]
    assert events(small, "Budget allows no more simulations")


async def test_mcts_reflection_feeds_later_proposals():
    provider = ScriptedProvider()
    run = make_run(provider, mcts_section={"n_simulations": 6, "depth": 1, "reflection": True,
                                           "concurrency": 1, "max_proposals": None})
    step, context = step_context(complexity="critical")
    result = await reason(run, step, context)
    assert result.success
    # depth 1: A (impossible) is a complete, poor path: reflected on once.
    assert provider.purposes.count("mcts_reflect") == 1
    assert events(run, "Completed mcts")[0].metadata["reflections"]


async def test_bad_mcts_setting_names_the_key():
    run = make_run(ScriptedProvider(), mcts_section={"simulations": 3})
    step, context = step_context(complexity="critical")
    result = await reason(run, step, context)
    assert result.strategy != "mcts" or not result.success
    warnings = [e for e in run.bus.events if "mcts.simulations is not a mcts setting"
                in (e.message + str(e.error_info or ""))]
    assert warnings
