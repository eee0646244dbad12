"""Plans as models write them: step names with spaces and capitals are normalised, not re-planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigil_core import hookimpl
from sigil_core.config import load_config
from sigil_core.dag import normalise_plan, validate_plan
from sigil_core.errors import PlanError
from sigil_core.model import Plan, PlanStep
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.plugins import PluginHost


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    for var in ("SIGIL_CONFIG", "SIGIL_OUTPUTS_DIR", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_names_become_unique_identifiers_and_dependencies_follow():
    plan = Plan("g", [
        PlanStep("Research the Company", "r"),
        PlanStep("Assess BANT", "a", dependencies=["Research the Company"]),
        PlanStep("assess bant", "a2", dependencies=["research_the_company"]),
        PlanStep("3. Write Recommendation!", "w",
                 dependencies=["Assess BANT", "assess bant", "Assess BANT"]),
        PlanStep("¿Qué?", "q"),
        PlanStep("!!!", "nothing left"),
    ])
    renames = normalise_plan(plan)
    validate_plan(plan)
    assert [s.name for s in plan.steps] == [
        "research_the_company", "assess_bant", "assess_bant_2", "step_3_write_recommendation",
        "que", "step_6"]
    assert plan.steps[1].dependencies == ["research_the_company"]
    assert plan.steps[2].dependencies == ["research_the_company"]
    assert plan.steps[3].dependencies == ["assess_bant", "assess_bant_2"]
    assert renames["Research the Company"] == "research_the_company"


@pytest.mark.parametrize("steps, problem", [
    ([], "no steps"),
    ([PlanStep("A", "x", dependencies=["B"]), PlanStep("B", "y", dependencies=["A"])], "cycle"),
    ([PlanStep("Do it", "x", dependencies=["Ghost Step"])], "unknown step 'Ghost Step'"),
    ([PlanStep("Do it", "x", dependencies=["do it"])], "depends on itself"),
])
def test_only_real_defects_are_rejected(steps, problem):
    plan = Plan("g", steps)
    normalise_plan(plan)
    with pytest.raises(PlanError, match=problem):
        validate_plan(plan)


class HumanNamedPlanner:
    calls = 0

    @hookimpl
    def sigil_plan(self, run, task):
        HumanNamedPlanner.calls += 1
        return Plan(goal=task, steps=[
            PlanStep("Research the Company", "Look the company up", complexity="simple"),
            PlanStep("Write the Answer", "Answer", complexity="simple", needs_contract=True,
                     dependencies=["Research the Company"]),
        ])


async def test_a_plan_with_human_step_names_runs_without_replanning(env):
    host = PluginHost(load_entry_points=False).load()
    host.register(HumanNamedPlanner(), name="human")
    outcome = await Orchestrator(load_config(), host).run(
        RunOptions(task="Summarise the benefits of tea", session="sess_names"))
    assert outcome.exit_code == 0, outcome.result.error
    assert HumanNamedPlanner.calls == 1
    assert [s.name for s in outcome.result.plan.steps] == ["research_the_company",
                                                          "write_the_answer"]
    events = [json.loads(line) for line in
              (env / "outputs" / "sessions" / "sess_names.jsonl").read_text().splitlines()]
    assert not any("Plan rejected" in e["message"] for e in events)
    done = next(e for e in events if e["operation"] == "create_plan"
                and e["message"].startswith("Completed"))
    assert done["metadata"]["renamed_steps"]["Write the Answer"] == "write_the_answer"
