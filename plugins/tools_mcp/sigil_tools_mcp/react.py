"""The ``react`` reasoning strategy: reason, act with a tool, observe, repeat.

Each iteration asks the model (``purpose="react_step"``) for a JSON decision
``{thought, action, action_input, answer}`` where ``action`` is one of the step's tools or
``"final_answer"``. A tool action goes through ``run.call_tool`` (argument validation, the
``tools`` event, TOOL_00x errors); the result, or the error, is the observation fed into the
next iteration, so a failing tool is something the model can work around rather than the end
of the step. The loop stops on a final answer, on a repeated identical call, after
``max_iterations``, or when the reasoning component's share of the budget cannot pay for
another iteration.

The decision's hints carry the tools' schemas and the history of calls, so a model that reads
structured hints instead of prose (Sigil's offline model) decides like any other.

Settings (``react:`` section of the config file): ``max_iterations`` (6), ``max_tokens`` per
decision (512), ``max_observation_chars`` (2000).
"""

from __future__ import annotations

import json
from typing import Any

from sigil_core import SigilError, StrategyError, ToolError, estimate_tokens

from . import sessions

FINAL = "final_answer"
DEFAULT_MAX_ITERATIONS = 6
DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_OBSERVATION = 2000
#: Tools described to the model when the step names none.
MAX_TOOLS_IN_PROMPT = 16


def decision_schema(tool_names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "description": "Your reasoning about what to do next"},
            "action": {"type": "string", "enum": [*tool_names, FINAL],
                       "description": "A tool to call, or final_answer when you can answer"},
            "action_input": {"type": "object", "description": "The tool's arguments"},
            "answer": {"type": "string", "description": "The answer, with action=final_answer"},
        },
        "required": ["thought", "action"],
    }


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


def resolve_tools(registry: dict[str, Any], wanted: list[str]
                  ) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Registry entries for the step's tool names (registry names, or a server tool's plain
    name when it is unambiguous); also the names not found and the plain -> registry aliases."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    aliases: dict[str, str] = {}
    for name in wanted:
        if name in registry:
            found[name] = registry[name]
            continue
        matches = [k for k, t in registry.items() if getattr(t, "tool_name", None) == name]
        if len(matches) == 1:
            found[matches[0]] = registry[matches[0]]
            aliases[name] = matches[0]
        else:
            missing.append(name)
    return found, missing, aliases


class ReactStrategy:
    """Reason + act over the run's tools, bounded in iterations and by its budget share."""

    name = "react"

    async def execute(self, run: Any, step: Any, context: Any) -> Any:
        from sigil_core import ReasoningResult

        sessions.bind_run(run)
        settings = run.config.section("react") if hasattr(run.config, "section") else {}
        max_iterations = int(settings.get("max_iterations", DEFAULT_MAX_ITERATIONS))
        max_tokens = int(settings.get("max_tokens", DEFAULT_MAX_TOKENS))
        max_obs = int(settings.get("max_observation_chars", DEFAULT_MAX_OBSERVATION))

        registry = run.registry("tools")
        required, missing, aliases = resolve_tools(registry, list(step.tools_required or []))
        tools = required or dict(sorted(registry.items())[:MAX_TOOLS_IN_PROMPT])

        base_hints = context.hints() if hasattr(context, "hints") else {
            "task": getattr(context, "task", None), "step": step.name}
        history: list[dict[str, Any]] = []
        calls: dict[str, dict[str, Any]] = {}
        tried: set[str] = set()
        final: str | None = None
        stopped = "max_iterations"
        iterations = 0

        # The step's own tools are worth starting a server for; the others go by what is known.
        schemas = {n: {"description": getattr(t, "description", ""),
                       "input_schema": (await self._schema(t) if n in required
                                        else getattr(t, "input_schema", None) or {})}
                   for n, t in tools.items()}
        for iteration in range(1, max_iterations + 1):
            prompt = self._prompt(step, context, tools, history, missing)
            needed = estimate_tokens(prompt) + max_tokens
            if run.budget.component_remaining("reasoning") < needed:
                if iteration == 1:
                    raise StrategyError(
                        f"react: the reasoning budget share left "
                        f"({run.budget.component_remaining('reasoning')} tokens) cannot pay for "
                        f"one iteration (~{needed})", code="REASONING_001")
                stopped = "budget"
                break
            iterations = iteration
            try:
                result = await run.llm.generate(
                    prompt, system=_system(context), purpose="react_step",
                    schema=decision_schema(list(tools)),
                    max_tokens=max_tokens, component="reasoning",
                    hints={**base_hints, "strategy": self.name, "tools": list(tools),
                           "tool_schemas": schemas,
                           "required_tools": list(required), "iteration": iteration,
                           "observations": [h["observation"] for h in history],
                           "history": history},
                )
            except SigilError as exc:
                if iteration == 1 or not getattr(exc, "recoverable", False):
                    raise
                stopped = "model_error"
                break
            decision = result.value if isinstance(result.value, dict) else {}
            action, args = self._choose(decision)
            thought = str(decision.get("thought") or "").strip()
            if action is None:
                answer = str(decision.get("answer") or "").strip()
                final = answer or thought or None
                stopped = "answer"
                break
            key = action + json.dumps(args, sort_keys=True, default=str)
            if key in tried:
                # The model asks for what it already saw: more iterations would loop.
                stopped = "repeated_action"
                break
            tried.add(key)
            tried.add(action)
            observation, ok = await self._act(run, action, args, max_obs)
            if ok:
                calls[action] = args
            history.append({"iteration": iteration, "thought": thought, "action": action,
                            "action_input": args, "observation": observation, "ok": ok})
            run.event("debug", "reasoning", self.name,
                      f"ReAct iteration {iteration}/{max_iterations}: {action}",
                      {"step_name": step.name, "iteration": iteration, "tool": action,
                       "ok": ok})

        output: Any = self._answer(final, history, step)
        if getattr(context, "output_schema", None):
            output = await self._structured(run, context, output, max_tokens)
        called = list(dict.fromkeys(h["action"] for h in history))
        called += [plain for plain, name in aliases.items() if name in called]
        succeeded = sum(1 for h in history if h["ok"])
        confidence = 0.85 if stopped == "answer" and (succeeded or not history) else (
            0.7 if succeeded else 0.5)
        # Key names avoid the ones the core's step executor sets itself (tools_used, confidence);
        # ``tools_called`` tells it not to call those tools a second time.
        metadata: dict[str, Any] = {
            "iterations": iterations, "stopped": stopped, "tools_called": called,
            "tool_calls": [{"tool": h["action"], "arguments": h["action_input"], "ok": h["ok"]}
                           for h in history],
        }
        if missing:
            metadata["missing_tools"] = missing
        not_called = [n for n in required if n not in called]
        if not_called:
            metadata["not_called"] = not_called
        return ReasoningResult(output=output, confidence=confidence, tool_params=calls,
                               metadata=metadata)

    # ----------------------------------------------------------------- parts

    @staticmethod
    def _choose(decision: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """The action to take: (tool name, arguments), or (None, {}) to answer."""
        action = decision.get("action")
        args = decision.get("action_input")
        args = args if isinstance(args, dict) else {}
        if action in (None, FINAL) or not isinstance(action, str):
            return None, {}
        return action, args

    @staticmethod
    async def _schema(tool: Any) -> dict[str, Any]:
        """The tool's input schema, fetched from its server when registration did not know it."""
        ensure = getattr(tool, "ensure_schema", None)
        if ensure is not None and getattr(tool, "schema_known", True) is False:
            try:
                return await ensure()
            except ToolError:
                pass  # the call itself will report the connection failure as its observation
        return getattr(tool, "input_schema", {}) or {}

    async def _act(self, run: Any, action: str, args: dict[str, Any], limit: int
                   ) -> tuple[str, bool]:
        try:
            value = await run.call_tool(action, args)
        except ToolError as exc:
            # Recoverable for the step: the model sees the error and may try something else.
            return f"error {exc.code}: {exc.message}", False
        return _short(value, limit), True

    def _prompt(self, step: Any, context: Any, tools: dict[str, Any],
                history: list[dict[str, Any]], missing: list[str]) -> str:
        base = context.prompt() if hasattr(context, "prompt") else (
            f"Task: {getattr(context, 'task', '')}\nStep: {step.name}: {step.description}")
        lines = [
            base,
            "",
            "Solve this step by reasoning and acting. You can call these tools:",
        ]
        for name, tool in tools.items():
            schema = json.dumps(getattr(tool, "input_schema", {}), separators=(",", ":"))
            lines.append(f"- {name}: {getattr(tool, 'description', '')} Arguments schema: {schema}")
        if missing:
            lines.append(f"(Not available: {', '.join(missing)}.)")
        lines += [
            "",
            ('Reply with JSON: "thought" (your reasoning), "action" (a tool name, or '
            '"final_answer"), "action_input" (the tool\'s arguments as an object) and, with '
            'final_answer, "answer" (the complete answer to the step). Call a tool only when '
            "you need its result, and never repeat a call you already made."),
        ]
        for h in history:
            lines += [
                f"Thought {h['iteration']}: {h['thought']}",
                f"Action {h['iteration']}: {h['action']} {json.dumps(h['action_input'])}",
                f"Observation {h['iteration']}: {h['observation']}",
            ]
        return "\n".join(lines)

    async def _structured(self, run: Any, context: Any, answer: str, max_tokens: int) -> Any:
        """The step must produce JSON for a contract: one call turns the answer into it."""
        prompt = context.prompt(f"Your findings so far:\n{answer}\n\nGive only the JSON.")
        hints = {**(context.hints() if hasattr(context, "hints") else {}), "strategy": self.name,
                 "answer": answer}
        result = await run.llm.generate(prompt, system=_system(context),
                                        schema=context.output_schema, purpose="reason",
                                        component="reasoning", hints=hints)
        return result.value

    @staticmethod
    def _answer(final: str | None, history: list[dict[str, Any]], step: Any) -> str:
        results = [f"- {h['action']}({json.dumps(h['action_input'], ensure_ascii=False)}): "
                   f"{h['observation']}" for h in history]
        if final:
            return final
        head = final or f"{step.description}"
        if not results:
            return head
        return head + "\n\nTool results:\n" + "\n".join(results)


def _system(context: Any) -> str | None:
    """The run's stable prefix (task, agent, tools) from the step context, when it has one."""
    system = getattr(context, "system", None)
    return system() if callable(system) else None
