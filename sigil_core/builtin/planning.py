"""Builtin planner: one structured LLM call that decomposes the task into a DAG of steps."""

from __future__ import annotations

import functools
from typing import Any, Literal

from sigil_core import hookimpl


@functools.cache
def plan_answer_class() -> type:
    """The plan's answer schema, built on first use (plugin modules must import fast)."""
    import attrs

    @attrs.define
    class StepAnswer:
        # Any name is accepted: the orchestrator turns it into a unique snake_case identifier
        # and remaps the dependencies (sigil_core.dag.normalise_plan), so schema and checks agree.
        name: str = attrs.field(metadata={"description": (
            "Short identifier of the step, e.g. research_lead (other names are converted)")})
        description: str
        complexity: Literal["simple", "moderate", "complex", "critical"]
        inputs: list[str] = attrs.Factory(list)
        outputs: list[str] = attrs.Factory(list)
        dependencies: list[str] = attrs.field(factory=list, metadata={
            "description": "Names of the earlier steps that must complete first"})
        tools_required: list[str] = attrs.Factory(list)
        needs_contract: bool = False
        #: Optional: a strategy by name; else the strategy policy chooses.
        reasoning_strategy: str | None = None

    @attrs.define
    class PlanAnswer:
        """A step-by-step execution plan."""

        steps: list[StepAnswer]

    # The classes are local: resolve their string annotations here, where the names exist.
    attrs.resolve_types(StepAnswer)
    attrs.resolve_types(PlanAnswer, localns={"StepAnswer": StepAnswer})
    return PlanAnswer


PROMPT = """Create a step-by-step execution plan for this goal:

Goal: {task}

Available tools: {tools}

For each step, provide:
1. name: Short identifier in snake_case (other names are converted to one)
2. description: What this step does
3. inputs: What it needs
4. outputs: What it produces
5. complexity: simple | moderate | complex | critical
6. dependencies: Which previous steps must complete first
7. tools_required: Which tools are needed
8. needs_contract: true if output needs verification
9. reasoning_strategy (optional): only when a step clearly needs one of: {strategies}

Steps without a dependency between them run at the same time, and each step costs the user
a model call's wait: make the plan as wide and as short as the work honestly allows. A step
depends only on the steps whose outputs it reads; never add a step that only reformats or
collects earlier results, nor one that looks up memories (relevant memories are given to every
step). The last step produces the final answer itself{deliverables}.
Return as JSON: {{"steps": [...]}}"""


@hookimpl(trylast=True)
async def sigil_plan(run: Any, task: str, route: Any, feedback: str | None,
                     contract: Any) -> Any:
    import json

    import attrs

    from sigil_core.model import Plan, PlanStep

    tools = run.registry("tools")
    tool_list = [{"name": n, "description": getattr(t, "description", ""),
                  "input_schema": getattr(t, "input_schema", None) or {}}
                 for n, t in sorted(tools.items())]
    deliverables = ""
    if contract is not None:
        deliverables = (", in the contract's format (" + ", ".join(
            d.name for d in contract.deliverables) + "); set needs_contract on it")
    prompt = PROMPT.format(task=task, tools=[t["name"] for t in tool_list] or "none",
                           strategies=", ".join(sorted(run.registry("strategies"))) or "none",
                           deliverables=deliverables)
    suggested = list(contract.suggested_steps) if contract is not None else []
    if suggested:
        prompt += ("\n\nA plan that usually serves this kind of task (adapt it to the goal):\n"
                   + json.dumps({"steps": suggested}, separators=(",", ":")))
    if feedback:
        prompt += f"\n\nThe previous plan was rejected: {feedback}\nReturn a corrected plan."
    result = await run.llm.generate(
        prompt, schema=plan_answer_class(), purpose="plan", component="planner", max_tokens=2000,
        hints={"task": task, "tools": tool_list, "complexity": route.complexity,
               "feedback": feedback, "suggested_steps": suggested},
    )
    steps = [PlanStep(**attrs.asdict(s, recurse=False)) for s in result.value.steps]
    return Plan(goal=task, steps=steps)
