"""Builtin reasoning: the ``direct`` and ``chain_of_thought`` strategies, and the step executor.

The step executor (``sigil_reason``) takes the step's strategy from the one strategy policy
(:mod:`sigil_core.strategies`: step > agent preferences > config ranges > builtin ranges), says
which and why in a ``select_strategy`` event, runs it inside a ``reasoning`` operation, calls the
tools the step requires with the parameters the strategy produced, and falls back down the
configured chain when a strategy fails.
"""

from __future__ import annotations

import re
from typing import Any

from sigil_core import hookimpl
from sigil_core.errors import (
    BudgetExhaustedError,
    FallbackExhaustedError,
    SigilError,
    ToolError,
)
from sigil_core.strategies import (
    StrategyChoice,
    choose_strategy,
    fallback_chain,
    settings_for,
)

# The data model is imported inside the functions: plugin modules load on `sigil --help`.


class DirectStrategy:
    """One call: the step prompt in, the answer out."""

    name = "direct"

    async def execute(self, run: Any, step: Any, context: Any) -> Any:
        from sigil_core.model import ReasoningResult

        result = await run.llm.generate(
            context.prompt(), system=context.system(), schema=context.output_schema,
            purpose="reason", component="reasoning",
            hints={**context.hints(), "strategy": self.name},
        )
        output = result.value if context.output_schema else result.text.strip()
        return ReasoningResult(output=output, confidence=0.9 if context.output_schema else 0.85)


_ANSWER = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*", re.IGNORECASE | re.MULTILINE)


class ChainOfThoughtStrategy:
    """One call that reasons step by step before answering; the answer follows 'Answer:'."""

    name = "chain_of_thought"

    async def execute(self, run: Any, step: Any, context: Any) -> Any:
        from sigil_core.model import ReasoningResult

        hints = {**context.hints(), "strategy": self.name}
        if context.output_schema:
            prompt = context.prompt("Think it through step by step, then give only the JSON.")
            result = await run.llm.generate(prompt, system=context.system(),
                                            schema=context.output_schema, purpose="reason",
                                            component="reasoning", hints=hints)
            return ReasoningResult(output=result.value, confidence=0.88)
        prompt = context.prompt(
            "Think step by step. Write your reasoning, then a final line starting with 'Answer:'.")
        result = await run.llm.generate(prompt, system=context.system(), purpose="reason",
                                        component="reasoning", hints=hints)
        text = result.text.strip()
        parts = _ANSWER.split(text)
        answer = parts[-1].strip() if len(parts) > 1 else text
        reasoning = parts[0].strip() if len(parts) > 1 else ""
        return ReasoningResult(
            output=answer, confidence=0.88 if len(parts) > 1 else 0.7,
            metadata={"reasoning_lines": len([ln for ln in reasoning.splitlines() if ln.strip()])},
        )


@hookimpl(trylast=True)
def sigil_register_strategies(register: Any) -> None:
    register(DirectStrategy())
    register(ChainOfThoughtStrategy())


def choose(run: Any, step: Any, agent: Any) -> Any:
    """The step's strategy, why, and its fallback chain (the policy of sigil_core.strategies)."""
    installed = run.registry("strategies")
    settings = settings_for(run.config)
    if step.strategy_reason is not None and step.reasoning_strategy:
        chain = fallback_chain(step.reasoning_strategy, installed, settings, step.complexity)
        return StrategyChoice(step.reasoning_strategy, step.strategy_reason, chain)
    tools = run.registry("tools")
    return choose_strategy(
        step.complexity, installed, explicit=step.reasoning_strategy,
        preferences=agent.strategy_preferences if agent else (),
        agent_name=agent.name if agent else None, settings=settings,
        tools_needed=any(t in tools for t in step.tools_required))


@hookimpl(trylast=True)
async def sigil_reason(run: Any, step: Any, context: Any) -> Any:
    from sigil_core.model import ErrorInfo, StepResult, iso_ms, utcnow

    strategies = run.registry("strategies")
    choice = choose(run, step, context.agent)
    chain = choice.chain
    run.event("info", "reasoning", "select_strategy",
              f"Step {step.name}: {choice.name}, {choice.reason}" if chain else
              f"Step {step.name}: no strategy installed for it ({choice.reason})",
              metadata={"step_name": step.name, "strategy": choice.name,
                        "strategy_reason": choice.reason, "fallback_chain": chain})
    started = iso_ms(utcnow())
    errors: list[str] = []
    for name in chain:
        strategy = strategies[name]
        try:
            meta = {"step_name": step.name, "strategy": name,
                    "strategy_reason": choice.reason if name == choice.name
                    else f"fallback from {choice.name}", "fallback_chain": chain}
            async with run.operation("reasoning", name, meta) as op:
                result = await strategy.execute(run, step, context)
                tools_used = await _run_tools(run, step, result)
                extra = {k: v for k, v in result.metadata.items() if k not in meta}
                op.set_metadata(**{**extra, "confidence": result.confidence,
                                   "tools_used": tools_used})
            return StepResult(
                step_name=step.name, output=result.output, tokens_used=op.tokens,
                success=True, strategy=name, confidence=result.confidence,
                started_at=started, finished_at=iso_ms(utcnow()),
            )
        except BudgetExhaustedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any strategy failure falls back
            errors.append(f"{name}: {exc}")
            nxt = chain[chain.index(name) + 1] if chain.index(name) + 1 < len(chain) else None
            info = ErrorInfo.from_exception(exc, with_trace=not isinstance(exc, SigilError))
            info.error_code = "REASONING_001"
            info.recoverable = nxt is not None
            run.event("warning", "reasoning", name,
                      f"Strategy {name} failed on {step.name}" + (
                          f"; falling back to {nxt}" if nxt else ""),
                      metadata={"step_name": step.name, "fallback": nxt}, error_info=info)
    raise FallbackExhaustedError(
        f"every strategy failed on step {step.name!r}: " + " | ".join(errors),
        context={"step_name": step.name, "chain": chain})


async def _run_tools(run: Any, step: Any, result: Any) -> list[str]:
    """Call the step's required tools (parameters from the strategy); failures are recoverable."""
    from sigil_core.model import ErrorInfo

    used: list[str] = []
    tools = run.registry("tools")
    for name in step.tools_required:
        if name in result.metadata.get("tools_called", []):
            used.append(name)  # the strategy (e.g. react) already called it
            continue
        if name not in tools:
            run.event("warning", "tools", name, f"Tool {name} is not available; step continues",
                      error_info=ErrorInfo("ToolError", f"tool {name!r} not found", "TOOL_001",
                                           recoverable=True))
            continue
        params = result.tool_params.get(name)
        if params is None and (getattr(tools[name], "input_schema", None) or {}).get("required"):
            # The strategy produced no arguments and the tool needs some: calling it with {}
            # could only fail. Say so and let the step go on.
            run.event("info", "tools", name,
                      f"Tool {name} skipped: the strategy gave no arguments for it",
                      metadata={"step_name": step.name, "tool_name": name})
            continue
        try:
            output = await run.call_tool(name, params or {})
        except ToolError as exc:
            result.metadata.setdefault("tool_errors", {})[name] = exc.message
            continue
        used.append(name)
        result.metadata.setdefault("tool_results", {})[name] = _jsonable(output)
    return used


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
