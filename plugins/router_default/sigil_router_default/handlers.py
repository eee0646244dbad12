"""What each intent leads to when it does not need the full plan-execute-validate flow.

* simple_query: one direct answer (with routing, at most two LLM calls; no plan, no contract).
* create_agent: an agent definition, validated and saved under ``<home>/agents``.
* modify_agent: a new version of an existing agent; the previous version goes to ``.history``.
* execute_task: ``None``, so the core runs the eight phases.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigil_core import (
    STRATEGY_ORDER,
    Agent,
    OrchestrationResult,
    RouteDecision,
    UsageError,
    agent_path,
    get_agent,
    load_agents,
    save_agent,
    unstructure,
    validate_agent_name,
)

from . import agent_text
from .router import settings_for
from .selection import AGENT_BUILDER, AGENT_EDITOR, DIRECT_ANSWER

if TYPE_CHECKING:
    from sigil_core import Run


async def handle(run: Run, task: str, route: RouteDecision) -> OrchestrationResult | None:
    if route.intent == "simple_query" and route.handler in (DIRECT_ANSWER, "responder"):
        return await answer_directly(run, task, route)
    if route.intent == "create_agent" and route.handler == AGENT_BUILDER:
        return await create_agent(run, task, route)
    if route.intent == "modify_agent" and route.handler == AGENT_EDITOR:
        return await modify_agent(run, task, route)
    return None


def _result(run: Run, task: str, route: RouteDecision, output: Any,
            notes: list[str]) -> OrchestrationResult:
    return OrchestrationResult(
        session_id=run.session_id, success=True, task=task, intent=route.intent, output=output,
        route=route, provider=run.llm.provider_name, notes=notes,
    )


# --------------------------------------------------------------------------- simple_query


async def answer_directly(run: Run, task: str, route: RouteDecision) -> OrchestrationResult:
    """One LLM call answers; nothing is planned or validated. With tools and the ``react``
    strategy installed, the answer may use a tool (what time is it in Tokyo?): a question that
    needs none still costs one call."""
    settings = settings_for(run)
    react = run.registry("strategies").get("react")
    if react is not None and run.registry("tools"):
        return await _answer_with_tools(run, task, route, react)
    async with run.phase("execute"), run.operation("reasoning", "direct_answer",
                             {"strategy": "direct", "handler": route.handler}) as op:
        result = await run.llm.generate(
            f"Answer briefly and directly.\n\nQuestion: {task}",
            purpose="answer", component="reasoning", max_tokens=settings.answer_max_tokens,
            hints={"task": task},
        )
        op.set_metadata(answer_chars=len(result.text))
    return _result(run, task, route, result.text,
                   ["answered directly: no plan, no contract"])


async def _answer_with_tools(run: Run, task: str, route: RouteDecision,
                             react: Any) -> OrchestrationResult:
    from sigil_core import PlanStep, StepContext

    step = PlanStep(name="answer", complexity="simple", description=(
        "Answer the question briefly and directly; call a tool only when its result is the "
        "answer (a calculation, the current time)"))
    context = StepContext(task=task, step=step, tools=sorted(run.registry("tools")))
    async with run.phase("execute"), run.operation("reasoning", "direct_answer",
                             {"strategy": "react", "handler": route.handler}) as op:
        result = await react.execute(run, step, context)
        output = result.output if isinstance(result.output, str) else str(result.output)
        called = list(result.metadata.get("tools_called") or [])
        op.set_metadata(answer_chars=len(output), tools_called=called)
    note = (f"answered directly with {', '.join(called)}" if called
            else "answered directly") + ": no plan, no contract"
    return _result(run, task, route, output, [note])


# --------------------------------------------------------------------------- agent definitions


def agent_schema() -> dict[str, Any]:
    """JSON Schema of an agent definition.

    Deliberately loose (no enums, no name pattern): the prompt lists what is installed, and
    :func:`validate_definition` drops what does not exist. A strict schema would turn one
    invented tool into a re-ask and then a failed run; this way creating an agent is one call.
    """
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "instructions": {"type": "string"},
            "tools": {"type": "array", "items": {"type": "string"}},
            "contract": {"type": ["string", "null"]},
            "strategy_preferences": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "description", "instructions", "tools", "contract",
                     "strategy_preferences"],
    }


def _installed(run: Run) -> tuple[list[str], list[str], list[str]]:
    tools = sorted(run.registry("tools"))
    contracts = sorted(run.registry("contracts"))
    strategies = sorted(set(run.registry("strategies")) | set(STRATEGY_ORDER))
    return tools, contracts, strategies


def validate_definition(agent: Agent, tools: list[str], contracts: list[str],
                        strategies: list[str]) -> list[str]:
    """Drop what does not exist (a model may invent tools); return a note per dropped item.
    The name is checked by the caller: a bad name is the user's error, not the model's."""
    notes = []
    unknown = [t for t in agent.tools if t not in tools]
    if unknown:
        notes.append(f"dropped unknown tools: {', '.join(unknown)}")
        agent.tools = [t for t in agent.tools if t in tools]
    agent.tools = list(dict.fromkeys(agent.tools))
    if agent.contract is not None and agent.contract not in contracts:
        notes.append(f"dropped unknown contract {agent.contract!r}")
        agent.contract = None
    bad = [s for s in agent.strategy_preferences if s not in strategies]
    if bad:
        notes.append(f"dropped unknown strategies: {', '.join(bad)}")
    agent.strategy_preferences = list(dict.fromkeys(
        s for s in agent.strategy_preferences if s in strategies))
    if not agent.description.strip():
        raise UsageError("the agent definition has no description; say what the agent is for")
    if not agent.instructions.strip():
        raise UsageError("the agent definition has no instructions; say what the agent should do")
    return notes


def _definition(agent: Agent, path: Path | None = None) -> dict[str, Any]:
    data = unstructure(agent)
    data.pop("source", None)
    if path is not None:
        data["path"] = str(path)
    return data


async def create_agent(run: Run, task: str, route: RouteDecision) -> OrchestrationResult:
    """Build, validate and save a new agent definition."""
    tools, contracts, strategies = _installed(run)
    existing = load_agents(run.config, run.host)
    name = agent_text.explicit_name(task)
    if name is not None:
        validate_agent_name(name)  # before any call: nothing is written for a bad name
        if name in existing:
            raise UsageError(f"agent {name!r} already exists; ask to modify it, or run "
                             f"`sigil agents remove {name}` first")
    async with run.phase("execute"), run.operation("orchestrator", "create_agent",
                                                   {"handler": route.handler}) as op:
        notes: list[str] = []
        # The local parse is the draft the model improves (a model that cannot write one,
        # like the offline model, returns it as it is).
        try:
            draft: Agent | None = _parse_definition(task, name, existing, tools, contracts,
                                                    strategies, route)
            unparsed: UsageError | None = None
        except UsageError as exc:
            draft, unparsed = None, exc
        agent = await _generate_definition(run, task, name, existing, tools, contracts,
                                           strategies, route, draft)
        if unparsed is not None and _is_placeholder(agent):
            raise unparsed  # no draft and no real definition: say what the request lacks
        notes += validate_definition(agent, tools, contracts, strategies)
        agent.version = 1
        path = save_agent(run.config, agent)
        op.set_metadata(agent=agent.name, version=agent.version, path=str(path))
    notes.append(f"saved agent {agent.name} v{agent.version} to {path}")
    return _result(run, task, route, _definition(agent, path), notes)


def _parse_definition(task: str, name: str | None, existing: dict[str, Agent], tools: list[str],
                      contracts: list[str], strategies: list[str],
                      route: RouteDecision) -> Agent:
    name = name or agent_text.unique_name(agent_text.derive_name(task), existing)
    connector, purpose = agent_text.purpose_parts(task)
    if not purpose:
        raise UsageError("say what the new agent should do, e.g. \"create an agent that "
                         "summarizes my daily emails\"")
    contract = agent_text.contract_for(task, contracts)
    named_strategies = agent_text.mentioned(task, strategies)
    preferences = named_strategies or [route.reasoning_strategy]
    instructions = (f"You are {name}, an agent {connector} {purpose}. Work step by step, use "
                    "the tools you are given when they help, say what you could not verify, "
                    "and return a clear, structured result.")
    if contract:
        instructions += f" Your answer must satisfy the {contract} contract."
    return Agent(name=name, description=purpose[0].upper() + purpose[1:],
                 instructions=instructions, tools=agent_text.mentioned(task, tools),
                 contract=contract, strategy_preferences=preferences, source="file")


_CREATE_PROMPT = """Write an agent definition for this request.
Request: {task}
Installed tools: {tools}
Contracts (output checks): {contracts}
Reasoning strategies: {strategies}
{name_line}Reply with JSON only: name (lowercase, a-z0-9_-), description (one sentence), \
instructions (the agent's system prompt), tools, contract (or null), strategy_preferences."""


def _draft(agent: Agent | None) -> dict[str, Any] | None:
    """An agent as an answer to :func:`agent_schema` (every field, None included)."""
    if agent is None:
        return None
    return {k: getattr(agent, k) for k in agent_schema()["properties"]}


def _is_placeholder(agent: Agent) -> bool:
    from sigil_core import has_placeholder

    return has_placeholder([agent.description, agent.instructions])


async def _generate_definition(run: Run, task: str, name: str | None,
                               existing: dict[str, Agent], tools: list[str],
                               contracts: list[str], strategies: list[str],
                               route: RouteDecision, draft: Agent | None = None) -> Agent:
    name_line = f"The name must be: {name}\n" if name else (
        f"Do not use these taken names: {', '.join(sorted(existing))}\n" if existing else "")
    result = await run.llm.generate(
        _CREATE_PROMPT.format(task=task, tools=", ".join(tools) or "none",
                              contracts=", ".join(contracts) or "none",
                              strategies=", ".join(strategies), name_line=name_line),
        schema=agent_schema(), purpose="create_agent",
        component="orchestrator",
        hints={"task": task, "tools": tools, "contracts": contracts, "strategies": strategies,
               "name": name, "draft": _draft(draft)},
    )
    value = result.value
    chosen = name or str(value.get("name") or "")
    try:
        validate_agent_name(chosen)
    except UsageError:
        chosen = agent_text.derive_name(task)
    if name is None:
        chosen = agent_text.unique_name(chosen, existing)
    return Agent(
        name=chosen,
        description=str(value.get("description") or agent_text.purpose_clause(task)),
        instructions=str(value.get("instructions") or ""),
        tools=[str(t) for t in value.get("tools") or []],
        contract=value.get("contract"),
        strategy_preferences=[str(s) for s in value.get("strategy_preferences") or []]
        or [route.reasoning_strategy],
        source="file",
    )


# --------------------------------------------------------------------------- modify_agent


def _target_agent(run: Run, task: str) -> str:
    from .router import known_agent_names

    names = known_agent_names(run)
    found = agent_text.mentioned(task, names)
    if found:
        return found[0]
    # "Modify the foo agent ..." naming an agent that does not exist: say so, exit 2.
    m = re.search(
        r"\b(?:the|my|our)\s+(\S+)\s+(?:agent|assistant|bot)\b", task)
    if m and m.group(1).lower() not in ("existing", "current", "new"):
        candidate = m.group(1)
        validate_agent_name(candidate)
        raise UsageError(f"unknown agent {candidate!r}; known agents: "
                         f"{', '.join(names) or 'none'} (see `sigil agents list`)")
    raise UsageError("which agent should change? Name it in the request or pass --agent NAME; "
                     f"known agents: {', '.join(names) or 'none'}")


_MODIFY_PROMPT = """Change this agent definition as the request asks. Keep what it does not \
mention.
Request: {task}
Current definition (JSON): {current}
Installed tools: {tools}
Contracts: {contracts}
Reasoning strategies: {strategies}
Reply with JSON only: the complete new definition (same name)."""


async def modify_agent(run: Run, task: str, route: RouteDecision) -> OrchestrationResult:
    """Apply the requested change as a new version; the previous version is kept."""
    import json

    name = _target_agent(run, task)
    current = get_agent(run.config, run.host, name)  # a broken file is a UsageError here
    tools, contracts, strategies = _installed(run)
    edit = agent_text.parse_edit(task, name, tools, contracts, strategies)
    async with run.phase("execute"), run.operation("orchestrator", "modify_agent",
                                                   {"handler": route.handler, "agent": name}) as op:
        notes: list[str] = []
        new = Agent(name=current.name, description=current.description,
                    instructions=current.instructions, tools=list(current.tools),
                    contract=current.contract,
                    strategy_preferences=list(current.strategy_preferences),
                    version=current.version, source="file")
        if edit.structured:
            # Exact edits (tools, contract, strategies, description) need no model.
            _apply_edit(new, edit)
            notes.append("edit parsed locally")
        else:
            # The locally applied edit (a directive appended) is the draft the model improves.
            draft = Agent(name=new.name, description=new.description,
                          instructions=new.instructions, tools=list(new.tools),
                          contract=new.contract,
                          strategy_preferences=list(new.strategy_preferences),
                          version=new.version, source="file")
            _apply_edit(draft, edit)
            result = await run.llm.generate(
                _MODIFY_PROMPT.format(task=task, current=json.dumps(_definition(current)),
                                      tools=", ".join(tools) or "none",
                                      contracts=", ".join(contracts) or "none",
                                      strategies=", ".join(strategies)),
                schema=agent_schema(), purpose="modify_agent",
                component="orchestrator",
                hints={"task": task, "agent": _definition(current), "tools": tools,
                       "contracts": contracts, "strategies": strategies,
                       "draft": _draft(draft)},
            )
            value = result.value
            new.description = str(value.get("description") or new.description)
            new.instructions = str(value.get("instructions") or new.instructions)
            new.tools = [str(t) for t in value.get("tools") or []]
            new.contract = value.get("contract")
            new.strategy_preferences = [str(s) for s in value.get("strategy_preferences") or []]
        notes += validate_definition(new, tools, contracts, strategies)
        changed = [f for f in ("description", "instructions", "tools", "contract",
                               "strategy_preferences")
                   if getattr(new, f) != getattr(current, f)]
        if not changed:
            raise UsageError(f"nothing to change in agent {name!r}: say what should change "
                             "(instructions, tools, contract or strategy preferences)")
        path = agent_path(run.config, name)
        if not path.exists():
            # A registered (builtin or plugin) agent has no file yet: keep its definition as
            # the previous version before the first saved one overrides it.
            _write_history(run.config.agents_dir, current)
        new.version = current.version + 1
        path = save_agent(run.config, new)
        op.set_metadata(version=new.version, changed=changed, path=str(path))
    notes.append(f"saved agent {name} v{new.version} (changed: {', '.join(changed)}); "
                 f"v{current.version} kept in {path.parent / '.history'}")
    output = _definition(new, path)
    output["changed"] = changed
    output["previous_version"] = current.version
    return _result(run, task, route, output, notes)


def _apply_edit(agent: Agent, edit: agent_text.AgentEdit) -> None:
    agent.tools = [t for t in agent.tools if t not in edit.remove_tools]
    agent.tools += [t for t in edit.add_tools if t not in agent.tools]
    if edit.contract:
        agent.contract = edit.contract
    if edit.strategies:
        agent.strategy_preferences = edit.strategies + [
            s for s in agent.strategy_preferences if s not in edit.strategies]
    if edit.description:
        agent.description = edit.description
    if edit.directive and edit.directive not in agent.instructions:
        agent.instructions = f"{agent.instructions.rstrip()}\n{edit.directive}".strip()


def _write_history(folder: Path, agent: Agent) -> Path:
    import yaml

    history = folder / ".history"
    history.mkdir(parents=True, exist_ok=True)
    target = history / f"{agent.name}.v{agent.version}.yaml"
    fd, tmp = tempfile.mkstemp(dir=history, prefix=f".{agent.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(_definition(agent), fh, sort_keys=False, allow_unicode=True)
    os.replace(tmp, target)
    return target
