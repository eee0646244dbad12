"""Plans as DAGs: validation, strategy assignment, and concurrent execution."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from typing import Any

from .constants import STEP_COMPLEXITIES
from .errors import PlanError
from .model import Plan, PlanStep

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def step_identifier(name: object) -> str:
    """``"Research the Company"`` -> ``research_the_company``: lowercase ASCII words joined by
    ``_``, at most 64 characters, never starting with a digit ("" when nothing is left)."""
    import unicodedata

    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode()
    ident = _NOT_WORD.sub("_", text.lower()).strip("_")
    if ident[:1].isdigit():
        ident = f"step_{ident}"
    return ident[:64].rstrip("_")


def normalise_plan(plan: Plan) -> dict[str, str]:
    """Give every step a unique snake_case name and remap the dependencies; the renames.

    Models name steps as they like ("Research the company"); the planner's schema accepts any
    string, so it is this function, not a re-plan, that makes names identifiers. A dependency
    is matched by the step's original name, else by its identifier; one that matches nothing is
    left as is for :func:`validate_plan` to report.
    """
    renames: dict[str, str] = {}
    by_original: dict[str, str] = {}
    by_ident: dict[str, str] = {}
    taken: set[str] = set()
    for i, step in enumerate(plan.steps):
        base = step_identifier(step.name) or f"step_{i + 1}"
        new, n = base, 1
        while new in taken:
            n += 1
            new = f"{base[:60]}_{n}"
        taken.add(new)
        original = step.name if isinstance(step.name, str) else str(step.name)
        by_original.setdefault(original, new)
        by_ident.setdefault(step_identifier(original), new)
        if new != original:
            renames[original] = new
        step.name = new
    for step in plan.steps:
        deps: list[str] = []
        for dep in step.dependencies:
            dep = str(dep)
            mapped = by_original.get(dep) or by_ident.get(step_identifier(dep)) or dep
            if mapped not in deps:
                deps.append(mapped)
        step.dependencies = deps
    return renames


def validate_plan(plan: Plan) -> None:
    """Reject a plan that is not a DAG of well-named steps; the message says what to fix.

    Only real defects are left once :func:`normalise_plan` has run: no steps, an unknown
    dependency, a step depending on itself, a cycle, an unknown complexity.
    """
    if not plan.steps:
        raise PlanError("the plan has no steps")
    seen: set[str] = set()
    for i, step in enumerate(plan.steps):
        if not _NAME.match(step.name or ""):
            raise PlanError(f"$.steps[{i}].name {step.name!r} is not a snake_case identifier")
        if step.name in seen:
            raise PlanError(f"$.steps[{i}].name {step.name!r} is used by two steps")
        seen.add(step.name)
        if step.complexity not in STEP_COMPLEXITIES:
            raise PlanError(f"$.steps[{i}].complexity {step.complexity!r} is not one of "
                            f"{', '.join(STEP_COMPLEXITIES)}")
    for i, step in enumerate(plan.steps):
        for dep in step.dependencies:
            if dep not in seen:
                raise PlanError(f"$.steps[{i}] ({step.name}) depends on unknown step {dep!r}")
            if dep == step.name:
                raise PlanError(f"$.steps[{i}] ({step.name}) depends on itself")
    order = topological_order(plan)
    if len(order) != len(plan.steps):
        stuck = [s.name for s in plan.steps if s.name not in order]
        raise PlanError(f"the plan has a dependency cycle among: {', '.join(stuck)}")


def topological_order(plan: Plan) -> list[str]:
    """Kahn's algorithm, keeping the plan's own order among ready steps (stable)."""
    remaining = {s.name: set(s.dependencies) for s in plan.steps}
    order: list[str] = []
    progress = True
    while remaining and progress:
        progress = False
        for step in plan.steps:
            deps = remaining.get(step.name)
            if deps is not None and not deps - set(order):
                order.append(step.name)
                del remaining[step.name]
                progress = True
    return order


def plan_levels(plan: Plan) -> list[list[str]]:
    """The steps by depth: steps with no dependencies first, then those that depend only on
    them, and so on (the plan's own order within a level). Steps of one level may run at the
    same time."""
    depth: dict[str, int] = {}
    by_name = {s.name: s for s in plan.steps}
    for name in topological_order(plan):
        deps = [d for d in by_name[name].dependencies if d in depth]
        depth[name] = 1 + max((depth[d] for d in deps), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in plan.steps:
        if step.name in depth:
            levels[depth[step.name]].append(step.name)
    return levels


def final_step(plan: Plan) -> PlanStep:
    """The step whose output is the run's output: a sink step, preferring needs_contract."""
    depended = {d for s in plan.steps for d in s.dependencies}
    sinks = [s for s in plan.steps if s.name not in depended]
    contracted = [s for s in sinks if s.needs_contract]
    order = topological_order(plan)
    pool = contracted or sinks
    return max(pool, key=lambda s: order.index(s.name))


async def run_dag(
    plan: Plan,
    execute: Callable[[PlanStep, dict[str, Any]], Coroutine[Any, Any, Any]],
    *,
    on_failure: Callable[[BaseException], float] | None = None,
    finished: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run each step as soon as its dependencies are done; independent steps run concurrently.

    ``execute(step, outputs_so_far)`` returns the step's result. The first failure ends the
    run: ``on_failure(error)`` is told (it stops the run from starting new work) and returns a
    grace period in seconds; steps still running get that long to finish (their calls were sent
    and will be billed, so their results are worth keeping), then the rest are cancelled and the
    first failure is re-raised. Steps in ``finished`` (a resumed run's) are not run again.
    """
    results: dict[str, Any] = dict(finished or {})
    pending = {s.name: s for s in plan.steps if s.name not in results}
    running: dict[asyncio.Task[Any], str] = {}
    try:
        while pending or running:
            for name, step in list(pending.items()):
                if all(d in results for d in step.dependencies):
                    del pending[name]
                    task = asyncio.create_task(execute(step, results))
                    running[task] = name
            if not running:
                raise PlanError("no step can start: unmet dependencies "
                                + ", ".join(sorted(pending)))
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            failure: BaseException | None = None
            for task in done:
                name = running.pop(task)
                if task.cancelled():
                    failure = failure or asyncio.CancelledError()
                elif task.exception() is not None:
                    failure = failure or task.exception()
                else:
                    results[name] = task.result()
            if failure is not None:
                grace = on_failure(failure) if on_failure is not None else 0.0
                if running and grace > 0:
                    await asyncio.wait(running, timeout=grace)
                    for task in [t for t in running if t.done()]:
                        name = running.pop(task)
                        if not task.cancelled() and task.exception() is None:
                            results[name] = task.result()
                raise failure
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return results
