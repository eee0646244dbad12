"""The offline model: deterministic, no network, the default when no API key is configured.

It is not a language model, and it never passes for one. It answers each kind of call Sigil
makes (``request.purpose``) with small, general rules over the request's ``hints``, so a run
exercises every phase, every event and the budget exactly as with a real model, and the same
input always gives the same output:

* what a builtin tool can answer, it answers through the tool (it picks a tool the request
  names, or whose required argument the text fills, e.g. an arithmetic expression) and states
  the tool's result;
* what it cannot do, it says in one short line marked ``[offline placeholder]`` (what a real
  model would do), never by restating the prompt;
* a structured answer is a schema-valid instance of the requested JSON Schema whose strings
  are marked as placeholders, so a contract's validator (and a user) can tell;
* a structured request that carries the caller's own ``draft`` answer in its hints gets the
  draft back;
* a plan follows the steps the task's contract suggests (domain knowledge lives with the
  contract, as data), else one tool step, else a generic three-step plan.

Token counts are the documented estimate :func:`sigil_core.llm.estimate_tokens`
(one token per 4 characters, rounded up) for the prompt text and for the answer, plus 4 tokens
of overhead per message; estimate and report agree, so the budget is exact offline.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from sigil_core import hookimpl

if TYPE_CHECKING:
    from sigil_core.llm import LLMRequest, LLMResponse

# Plugin modules are imported by `sigil --help`: the model, the gateway and asyncio are
# imported where they are used, not here.


from sigil_core.constants import estimate_tokens

MODEL_ID = "sigil-offline-1"
NOTICE = ("Answers come from Sigil's offline model (deterministic rules, no network); "
          "set ANTHROPIC_API_KEY to use a real model.")


class OfflineProvider:
    """Registered as ``offline`` with the lowest priority."""

    name = "offline"
    priority = 0
    #: Shown with every result: the offline model must never pass for a real one.
    notice = NOTICE

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms

    def available(self, config: Any) -> bool:
        return True

    def bind(self, config: Any) -> OfflineProvider:
        """A per-run instance carrying the configured simulated latency."""
        return OfflineProvider(config.llm.offline_latency_ms)

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        return estimate_tokens(request.text()) + 4 * len(request.messages)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        import asyncio

        from sigil_core.llm import LLMResponse
        from sigil_core.model import TokenUsage

        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        answer = respond(request)
        stop = "end_turn"
        if estimate_tokens(answer) > request.max_tokens:
            answer = answer[: request.max_tokens * 4]
            stop = "max_tokens"
        model = request.model or MODEL_ID
        usage = TokenUsage(
            input_tokens=self.estimate_input_tokens(request),
            output_tokens=estimate_tokens(answer),
            model=f"offline:{model}",
        )
        return LLMResponse(text=answer, usage=usage, model=f"offline:{model}", stop_reason=stop)


@hookimpl(trylast=True)
def sigil_register_providers(register: Any) -> None:
    register(OfflineProvider())


# =========================================================================== the answers


def respond(request: LLMRequest) -> str:
    hints = request.hints
    if request.schema and isinstance(hints.get("draft"), dict):
        # The caller's own best guess (e.g. an agent definition parsed from the request):
        # a model without understanding cannot improve on it.
        return json.dumps(hints["draft"])
    handler = _HANDLERS.get(request.purpose)
    if handler is not None and not hints.get("reask"):
        try:
            answer = handler(request, hints)
        except Exception:  # noqa: BLE001 - unknown shapes fall back to the generic answer
            answer = None
        if answer is not None:
            return answer if isinstance(answer, str) else json.dumps(answer)
    if request.schema:
        return json.dumps(instance_for(request.schema, name=request.schema_name or "value"))
    return placeholder(f"a real model would answer this {request.purpose} request")


def _task_of(request: LLMRequest) -> str:
    task = request.hints.get("task")
    if task:
        return str(task)
    return request.messages[-1].get("content", "") if request.messages else ""


def placeholder(what: str) -> str:
    """One short line that says it is an offline placeholder and what it stands for."""
    from sigil_core.contracts import PLACEHOLDER_MARK

    what = " ".join(str(what).split())
    if len(what) > 160:
        what = what[:157].rsplit(" ", 1)[0] + "..."
    return f"{PLACEHOLDER_MARK} {what}"


# --------------------------------------------------------------------------- routing


_CREATE = re.compile(r"\b(create|build|make|set up|setup|define|design|new)\b.{0,60}\bagent\b", re.IGNORECASE)
_MODIFY = re.compile(r"\b(modify|update|change|edit|rename|adjust|tweak|improve)\b.{0,60}\bagent\b",
                     re.IGNORECASE)
_QUESTION = re.compile(r"^\s*(what|who|when|where|which|why|how (many|much|long|old|do|does|is)|"
                       r"define|is|are|does|do|can|tell me)\b", re.IGNORECASE)
_GREETING = re.compile(r"^\s*(hi|hello|hey|howdy|hiya|yo|greetings|good (morning|afternoon|evening)|"
                       r"thanks|thank you|how are you)\b[\s!.?,]*\w{0,12}[\s!.?]*$", re.IGNORECASE)
_ACTION = re.compile(r"\b(qualify|research|analy[sz]e|assess|compare|evaluate|plan|design|"
                     r"report|write|draft|build|create|prepare|investigate|audit|review)\b", re.IGNORECASE)


def classify(task: str) -> dict[str, Any]:
    """Intent and complexity from the form of the request (no domain knowledge)."""
    words = len(task.split())
    if _CREATE.search(task):
        return {"intent": "create_agent", "complexity": 0.4,
                "rationale": "asks for a new agent definition"}
    if _MODIFY.search(task):
        return {"intent": "modify_agent", "complexity": 0.35,
                "rationale": "asks to change an existing agent"}
    if _GREETING.search(task):
        return {"intent": "simple_query", "complexity": 0.05, "rationale": "a greeting"}
    if _QUESTION.search(task) and not _ACTION.search(task) and words <= 30:
        return {"intent": "simple_query", "complexity": 0.15,
                "rationale": "a short question answerable directly"}
    actions = len(_ACTION.findall(task))
    complexity = min(0.75, 0.3 + 0.08 * actions + words / 400)
    return {"intent": "execute_task", "complexity": round(complexity, 2),
            "rationale": f"a task with {actions or 'no'} named action(s)"}


# --------------------------------------------------------------------------- tools


def _tool_specs(hints: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tools from the hints: name -> {"description", "input_schema"}."""
    specs: dict[str, dict[str, Any]] = {}
    for tool in hints.get("tools") or []:
        if isinstance(tool, dict):
            specs[str(tool.get("name"))] = tool
        else:
            specs[str(tool)] = {"name": str(tool)}
    for name, spec in (hints.get("tool_schemas") or {}).items():
        specs.setdefault(name, {"name": name}).update(spec)
    return specs


def tools_for(text: str, hints: dict[str, Any]) -> list[str]:
    """Tools made for this text: its name is mentioned ("time" for current_time), or the text
    fills one of its required parameters through a specific extractor (an expression)."""
    from .offline_arguments import specific_parameters

    words = {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower())}
    chosen = []
    for name, spec in _tool_specs(hints).items():
        tokens = {t[:5] for t in re.split(r"[^a-z]+", name.lower()) if len(t) >= 4}
        schema = spec.get("input_schema") or {}
        required = set(schema.get("required") or [])
        filled = required & set(specific_parameters(schema, text))
        if tokens & words or filled:
            chosen.append(name)
    return chosen


def _describe_result(tool: str, observation: str) -> str:
    """A tool's observation as a sentence: its ``result`` first when it has one."""
    try:
        value = json.loads(observation)
    except ValueError:
        return f"{tool}: {observation}"
    if isinstance(value, dict):
        first = ["result"] if "result" in value else []
        parts = [f"{k} {value[k]}" for k in first + [k for k in value if k not in first]]
        return f"{tool}: " + ", ".join(parts)
    return f"{tool}: {value}"


def react_decision(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    """One ReAct decision: the next tool to call with arguments from the text, else the answer
    stating the tools' results."""
    from .offline_arguments import propose_arguments

    specs = _tool_specs(hints)
    history = hints.get("history") or []
    tried = {h.get("action") for h in history}
    text = f"{hints.get('step_description') or ''}\n{hints.get('task') or ''}"
    required = [t for t in hints.get("required_tools") or [] if t in specs]
    for name in required or tools_for(str(hints.get("task") or ""), hints):
        if name in tried or name not in specs:
            continue
        args = propose_arguments(specs[name].get("input_schema") or {}, text)
        if args is not None:
            return {"thought": placeholder(f"call {name} with arguments taken from the request"),
                    "action": name, "action_input": args}
    results = [_describe_result(h["action"], str(h.get("observation", "")))
               for h in history if h.get("ok")]
    if results:
        answer = "; ".join(results) + " (tool results; no language model)"
    else:
        answer = _no_answer(str(hints.get("task") or ""))
    return {"thought": placeholder("answer from the observations"), "action": "final_answer",
            "answer": answer}


# --------------------------------------------------------------------------- planning


def _step(name: str, description: str, complexity: str, deps: list[str] | None = None,
          inputs: list[str] | None = None, outputs: list[str] | None = None,
          tools: list[str] | None = None, contract: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "inputs": inputs or [],
            "outputs": outputs or [], "complexity": complexity, "dependencies": deps or [],
            "tools_required": tools or [], "needs_contract": contract}


def plan_for(task: str, hints: dict[str, Any]) -> dict[str, Any]:
    """The contract's suggested steps, else one step with the tools made for the task, else a
    generic understand -> execute plan (the last step answers: no formatting step)."""
    suggested = hints.get("suggested_steps")
    if suggested:
        return {"steps": [_step(**{"deps": s.get("dependencies"), **{
            k: v for k, v in s.items() if k in ("name", "description", "complexity", "inputs",
                                                  "outputs")}},
            tools=s.get("tools_required"), contract=bool(s.get("needs_contract")))
            for s in suggested]}
    tools = tools_for(task, hints)
    if tools:
        return {"steps": [_step("use_tools", f"Answer with the results of {', '.join(tools)}",
                                "moderate", outputs=["answer"], tools=tools, contract=True)]}
    return {"steps": [
        _step("understand_request", "Restate the request and what a good answer needs",
              "simple", outputs=["requirements"]),
        _step("execute_task", "Carry out the request and present the answer", "moderate",
              ["understand_request"], ["requirements"], ["answer"], contract=True),
    ]}


# --------------------------------------------------------------------------- reasoning


def reason_text(hints: dict[str, Any]) -> str:
    """What a real model would do for this step, in one labelled line (never the prompt)."""
    desc = str(hints.get("step_description") or hints.get("step") or "this step")
    return placeholder(f"a real model would: {desc[:1].lower() + desc[1:]}")


def _reason(request: LLMRequest, hints: dict[str, Any]) -> str | dict[str, Any]:
    if request.schema:
        value: str | dict[str, Any] = instance_for(request.schema,
                                                   name=request.schema_name or "value")
        from sigil_core.memory.phases import FOLDED_KEY

        if isinstance(value, dict) and FOLDED_KEY in value:
            # Facts to remember asked along with the answer: the same as a separate extraction.
            value[FOLDED_KEY] = extract_facts(request, hints)["facts"]
        return value
    answer = reason_text(hints)
    if hints.get("strategy") == "chain_of_thought":
        return f"Reasoning: {placeholder('no reasoning without a model')}\nAnswer: {answer}"
    return answer


def propose_thoughts(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    """As many distinct candidate thoughts as asked for (``k``), each a labelled placeholder,
    so a search over them (and its vote) runs as it would with a model."""
    k = max(1, min(int(hints.get("k") or 1), 8))
    desc = str(hints.get("step_description") or hints.get("step") or "this step")
    return {"thoughts": [placeholder(f"candidate {i} of {k} for: {desc}")
                         for i in range(1, k + 1)]}


def feedback_text(request: LLMRequest, hints: dict[str, Any]) -> str:
    problems = hints.get("problems") or []
    lines = ["Fix the output so that it satisfies the contract:"]
    lines += [f"- {p}" for p in problems] or ["- re-check every deliverable"]
    lines.append("Return one JSON object with every required deliverable.")
    return "\n".join(lines)


def extract_facts(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    """One event: which request the offline model handled. It invents no facts."""
    task = " ".join(str(hints.get("task") or "").split())
    if not task:
        return {"facts": []}
    if len(task) > 120:
        task = task[:117].rsplit(" ", 1)[0] + "..."
    return {"facts": [{"content": f"The offline model handled a request: {task}",
                       "type": "event", "confidence": 0.5, "category": "tasks"}]}


def filter_memories(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    task_words = set(re.findall(r"[a-z]{3,}", str(hints.get("task", "")).lower()))
    memories = [str(m) for m in hints.get("memories") or []]
    limit = int(hints.get("limit", 10))
    scored = sorted(range(len(memories)), key=lambda i: (
        -len(task_words & set(re.findall(r"[a-z]{3,}", memories[i].lower()))), i))
    return {"indices": sorted(scored[:limit])}


def answer_text(request: LLMRequest, hints: dict[str, Any]) -> str:
    mem = hints.get("memories") or []
    if mem:
        return f"From what Sigil remembers: {mem[0]}"
    return _no_answer(str(hints.get("task") or _task_of(request)))


def _no_answer(task: str) -> str:
    if _GREETING.search(task):
        return ("Hello. This is Sigil's offline model: it answers what the builtin tools can "
                "(arithmetic, the time) and shows the whole flow; set ANTHROPIC_API_KEY for a "
                "real model.")
    return placeholder("a real model would answer this; no builtin tool does. "
                       "Set ANTHROPIC_API_KEY for one.")


_HANDLERS: dict[str, Any] = {
    "route": lambda r, h: classify(str(h.get("task") or _task_of(r))),
    "plan": lambda r, h: plan_for(str(h.get("task") or _task_of(r)), h),
    "reason": _reason,
    "react_step": react_decision,
    "tot_propose": propose_thoughts,
    "contract_feedback": feedback_text,
    "extract": extract_facts,
    "memory_filter": filter_memories,
    "answer": answer_text,
}


# --------------------------------------------------------------------------- generic answers


#: instance_for's answers by (schema, name), as JSON: the same schema is asked for again and
#: again (every run's final step asks for its contract's); building the value walked it each
#: time (~50-100 us for a contract's schema, ~3 us to copy it back out of JSON).
_INSTANCES: dict[tuple[bytes, str], bytes] = {}
_MAX_INSTANCES = 256


def instance_for(schema: dict[str, Any], name: str = "value") -> Any:
    """A deterministic value that satisfies a JSON Schema (the common subset); its strings are
    marked as offline placeholders. A new object each call (callers may change it)."""
    import orjson

    try:
        key = (orjson.dumps(schema, option=orjson.OPT_SORT_KEYS), name)
    except TypeError:  # not JSON (a caller's own objects in it): built each time
        return _instance_for(schema, name)
    cached = _INSTANCES.get(key)
    if cached is None:
        value = _instance_for(schema, name)
        try:
            cached = orjson.dumps(value)
        except TypeError:  # e.g. an integer beyond 64 bits from a schema's bounds
            return value
        if len(_INSTANCES) >= _MAX_INSTANCES:
            _INSTANCES.clear()
        _INSTANCES[key] = cached
    return orjson.loads(cached)


def _instance_for(schema: dict[str, Any], name: str = "value") -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance_for(schema[key][0], name)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        out = {k: _instance_for(props[k], k) for k in props}
        for k in schema.get("required") or []:
            out.setdefault(k, placeholder(k.replace("_", " ")))
        return out
    if typ == "array":
        n = max(1, int(schema.get("minItems", 1)))
        items = schema.get("items") or {"type": "string"}
        return [_instance_for(items, f"{name} {i + 1}") for i in range(n)]
    if typ == "integer":
        lo = schema.get("minimum", 0)
        hi = schema.get("maximum", lo + 100)
        return int((lo + hi) // 2) if "maximum" in schema else max(int(lo), 1)
    if typ == "number":
        lo = schema.get("minimum", 0.0)
        hi = schema.get("maximum", 1.0)
        return round((lo + hi) / 2, 2)
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    if isinstance(schema.get("pattern"), str):
        sample = _sample_for(schema["pattern"])
        if sample is not None:
            return sample
    text = placeholder(name.replace("_", " "))
    min_len = int(schema.get("minLength", 0))
    max_len = schema.get("maxLength")
    if len(text) < min_len:
        text += " (a real model would write this)"
    while len(text) < min_len:
        text += " (no content offline)"
    return text[:max_len] if isinstance(max_len, int) else text


_CLASS = {"d": "0", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a"}


def _sample_for(pattern: str) -> str | None:
    """The simplest string matching a simple regex (literals, \\d \\w, [classes], {n} + * ?),
    checked with ``re``; None for what this reading does not cover (groups, alternation)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "^$":
            i += 1
            continue
        if c in "()|":
            return None
        if c == "\\" and i + 1 < len(pattern):
            atom, i = _CLASS.get(pattern[i + 1], pattern[i + 1]), i + 2
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0 or pattern[i + 1] == "^":
                return None
            atom, i = pattern[i + 1], end + 1
        elif c == ".":
            atom, i = "x", i + 1
        else:
            atom, i = c, i + 1
        count = 1
        if i < len(pattern) and pattern[i] == "{":
            end = pattern.find("}", i)
            if end < 0:
                return None
            count, i = int(pattern[i + 1:end].split(",")[0] or 0), end + 1
        elif i < len(pattern) and pattern[i] in "*?":
            count, i = 0, i + 1
        elif i < len(pattern) and pattern[i] == "+":
            i += 1
        out.append(atom * count)
    sample = "".join(out)
    try:
        return sample if re.search(pattern, sample) else None
    except re.error:
        return None
