"""The offline model: deterministic, no network, the default when no API key is configured.

It is not a language model. It answers each kind of call Sigil makes (``request.purpose``)
with rules over the request's text and ``hints``, so a run exercises every phase, every event
and the budget exactly as with a real model, and the same input always gives the same output.
Anything it does not know gets a schema-valid answer built from the schema and the prompt.

Token counts are the documented estimate :func:`sigil_core.llm.estimate_tokens`
(one token per 4 characters, rounded up) for the prompt text and for the answer, plus 4 tokens
of overhead per message; estimate and report agree, so the budget is exact offline.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from sigil_core import hookimpl

if TYPE_CHECKING:
    from sigil_core.llm import LLMRequest, LLMResponse

# Plugin modules are imported by `sigil --help`: the model, the gateway and asyncio are
# imported where they are used, not here.


def estimate_tokens(text: str) -> int:
    """Same rule as :func:`sigil_core.llm.estimate_tokens`: one token per 4 characters."""
    return max(1, math.ceil(len(text) / 4))

MODEL_ID = "sigil-offline-1"
NOTICE = ("Answers come from Sigil's offline model (deterministic rules, no network); "
          "set ANTHROPIC_API_KEY to use a real model.")


class OfflineProvider:
    """Registered as ``offline`` with the lowest priority."""

    name = "offline"
    priority = 0

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
    handler = _HANDLERS.get(request.purpose)
    if handler is not None and not hints.get("reask"):
        try:
            answer = handler(request, hints)
        except Exception:  # noqa: BLE001 - unknown shapes fall back to the generic answer
            answer = None
        if answer is not None:
            return answer if isinstance(answer, str) else json.dumps(answer)
    if request.schema:
        return json.dumps(instance_for(request.schema, _task_of(request), name=request.schema_name))
    return _generic_text(request)


def _task_of(request: LLMRequest) -> str:
    task = request.hints.get("task")
    if task:
        return str(task)
    return request.messages[-1].get("content", "") if request.messages else ""


# --------------------------------------------------------------------------- facts of a task


_TITLE = re.compile(
    r"\b(CEO|CTO|CFO|COO|CMO|CIO|CRO|Founder|Co-founder|Owner|President|VP(?: of)? [A-Z][\w]+|"
    r"Vice President(?: of [A-Z][\w]+)?|Director(?: of [A-Z][\w]+)?|Head of [A-Z][\w]+|"
    r"Manager|Engineer|Analyst|Consultant|Intern)\b")
_NAME = re.compile(r"\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)+)\b")
_COMPANY = re.compile(r"\b(?:at|from|of|with)\s+([A-Z][\w&.'-]*(?:\s+(?:[A-Z][\w&.'-]*|&))*)")
_INTEREST = re.compile(r"interested in (?:the |an |a |our )?([^,.;]+)", re.I)
_STOP_NAMES = {"Qualify", "Research", "Create", "Analyze", "Please", "Lead"}


def lead_facts(task: str) -> dict[str, Any]:
    """Who, what role, which company and what interest a lead request names."""
    title_m = _TITLE.search(task)
    company_m = _COMPANY.search(task)
    company = company_m.group(1).strip() if company_m else None
    name = None
    for m in _NAME.finditer(task):
        candidate = m.group(1)
        if candidate.split()[0] in _STOP_NAMES or (company and candidate in company):
            continue
        name = candidate
        break
    interest_m = _INTEREST.search(task)
    return {
        "name": name or "the lead",
        "title": title_m.group(1) if title_m else None,
        "company": company or "an unnamed company",
        "interest": interest_m.group(1).strip() if interest_m else None,
    }


def bant(task: str) -> dict[str, Any]:
    """A BANT assessment from the request's own words, with a 0-100 score."""
    f = lead_facts(task)
    low = task.lower()
    title = (f["title"] or "").upper()
    if any(t in title for t in ("CEO", "CTO", "CFO", "COO", "CMO", "CIO", "CRO", "FOUNDER",
                                "OWNER", "PRESIDENT")) and "VICE" not in title:
        authority, a_pts = "High: decision maker (" + f["title"] + ")", 25
    elif any(t in title for t in ("VP", "VICE", "DIRECTOR", "HEAD")):
        authority, a_pts = f"Medium-high: senior influencer ({f['title']})", 18
    elif f["title"]:
        authority, a_pts = f"Medium: {f['title']} likely needs sign-off", 12
    else:
        authority, a_pts = "Unknown: role not stated", 6
    if f["interest"]:
        need, n_pts = f"Stated interest in {f['interest']}", 22
    else:
        need, n_pts = "Not stated; confirm pain points in discovery", 8
    if "enterprise" in low or "budget" in low or "$" in task:
        budget, b_pts = "Likely: enterprise-tier interest implies allocated budget", 20
    elif any(w in low for w in ("pro", "premium", "paid", "upgrade")):
        budget, b_pts = "Possible: paid-tier interest", 14
    else:
        budget, b_pts = "Unknown: no budget signal", 8
    if any(w in low for w in ("urgent", "asap", "this week", "this month", "immediately")):
        timeline, t_pts = "Short: urgency stated", 20
    elif re.search(r"\b(q[1-4]|next (month|quarter)|this quarter|by \w+)\b", low):
        timeline, t_pts = "Defined: a timeframe is mentioned", 14
    else:
        timeline, t_pts = "Unknown: ask about timing", 8
    score = a_pts + n_pts + b_pts + t_pts
    return {
        "facts": f,
        "score": score,
        "bant_assessment": {"budget": budget, "authority": authority, "need": need,
                            "timeline": timeline},
    }


def recommendation(score: int, facts: dict[str, Any]) -> tuple[str, str]:
    if score >= 70:
        return "hot", (f"Schedule a discovery call with {facts['name']} this week and involve an "
                       "account executive for the enterprise plan.")
    if score >= 45:
        return "warm", (f"Send {facts['name']} tailored material and follow up within two weeks "
                        "to confirm budget and timeline.")
    return "cold", f"Add {facts['name']} to a nurture sequence; do not assign sales time yet."


def _domain(task: str) -> str:
    low = task.lower()
    if re.search(r"\b(lead|prospect|qualif)", low):
        return "lead"
    if re.search(r"\b(research|report|market|trend|analy[sz]|competitor|study)", low):
        return "research"
    return "general"


# --------------------------------------------------------------------------- routing


_CREATE = re.compile(r"\b(create|build|make|set up|setup|define|design|new)\b.{0,60}\bagent\b", re.I)
_MODIFY = re.compile(r"\b(modify|update|change|edit|rename|adjust|tweak|improve)\b.{0,60}\bagent\b",
                     re.I)
_QUESTION = re.compile(r"^\s*(what|who|when|where|which|why|how (many|much|long|old|do|does|is)|"
                       r"define|is|are|does|do|can|tell me)\b", re.I)
_ACTION = re.compile(r"\b(qualify|research|analy[sz]e|assess|compare|evaluate|plan|design|"
                     r"report|write|draft|build|create|prepare|investigate|audit|review)\b", re.I)


def classify(task: str) -> dict[str, Any]:
    words = len(task.split())
    if _CREATE.search(task):
        return {"intent": "create_agent", "complexity": 0.4,
                "rationale": "asks for a new agent definition"}
    if _MODIFY.search(task):
        return {"intent": "modify_agent", "complexity": 0.35,
                "rationale": "asks to change an existing agent"}
    if _QUESTION.search(task) and not _ACTION.search(task) and words <= 30:
        return {"intent": "simple_query", "complexity": 0.15,
                "rationale": "a short question answerable directly"}
    domain = _domain(task)
    low = task.lower()
    if re.search(r"\b(compliance|audit|legal|regulat|security)", low):
        complexity = 0.8
    elif domain == "lead":
        complexity = 0.65
    elif domain == "research":
        complexity = 0.6
    else:
        complexity = min(0.55, 0.3 + 0.05 * len(_ACTION.findall(task)) + words / 400)
    return {"intent": "execute_task", "complexity": round(complexity, 2),
            "rationale": f"a multi-step {domain} task"}


# --------------------------------------------------------------------------- planning


def _tool_names(hints: dict[str, Any]) -> list[dict[str, str]]:
    tools = hints.get("tools") or []
    return [t if isinstance(t, dict) else {"name": str(t), "description": ""} for t in tools]


def _tools_for(text: str, hints: dict[str, Any], keywords: tuple[str, ...] = ()) -> list[str]:
    """Tools whose name (or the given keywords) the text mentions."""
    low = text.lower()
    words = set(re.findall(r"[a-z]+", low))
    stems = {w[:5] for w in words if len(w) >= 4}
    chosen = []
    for tool in _tool_names(hints):
        tokens = [t for t in re.split(r"[^a-z]+", tool["name"].lower()) if len(t) >= 4]
        if any(k in tool["name"].lower() for k in keywords) or any(t[:5] in stems for t in tokens):
            chosen.append(tool["name"])
    return chosen


def _step(name: str, description: str, complexity: str, deps: list[str] | None = None,
          inputs: list[str] | None = None, outputs: list[str] | None = None,
          tools: list[str] | None = None, contract: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "inputs": inputs or [],
            "outputs": outputs or [], "complexity": complexity, "dependencies": deps or [],
            "tools_required": tools or [], "needs_contract": contract}


def plan_for(task: str, hints: dict[str, Any]) -> dict[str, Any]:
    domain = _domain(task)
    if domain == "lead":
        f = lead_facts(task)
        search = _tools_for("", hints, keywords=("search", "web", "crm", "lookup"))
        steps = [
            _step("retrieve_context", f"Collect what is already known about {f['name']} and "
                  f"{f['company']}", "simple", outputs=["known_context"]),
            _step("research_lead", f"Research {f['name']} ({f['title'] or 'role unknown'}) and "
                  f"{f['company']}", "moderate", inputs=["lead"], outputs=["lead_profile"],
                  tools=search[:1]),
            _step("assess_bant", "Assess budget, authority, need and timeline (BANT)", "complex",
                  ["retrieve_context", "research_lead"], ["known_context", "lead_profile"],
                  ["bant_assessment"]),
            _step("generate_recommendation", "Recommend the next sales action", "moderate",
                  ["assess_bant"], ["bant_assessment"], ["recommended_action"]),
            _step("format_output", "Format the qualification as the contract's deliverables",
                  "simple", ["assess_bant", "generate_recommendation"],
                  ["bant_assessment", "recommended_action"], ["qualification"], contract=True),
        ]
    elif domain == "research":
        search = _tools_for("", hints, keywords=("search", "web", "fetch", "browse"))
        steps = [
            _step("gather_information", "Gather sources and facts on the topic", "moderate",
                  outputs=["sources"], tools=search[:1]),
            _step("identify_trends", "Identify the main trends and signals", "moderate",
                  outputs=["trends"]),
            _step("analyze_findings", "Analyse the material and weigh the evidence", "complex",
                  ["gather_information", "identify_trends"], ["sources", "trends"],
                  ["key_findings"]),
            _step("format_output", "Write the report with summary, sources and key findings",
                  "simple", ["analyze_findings"], ["key_findings"], ["report"], contract=True),
        ]
    else:
        tools = _tools_for(task, hints)
        steps = [
            _step("understand_request", "Restate the request and what a good answer needs",
                  "simple", outputs=["requirements"]),
            _step("execute_task", "Carry out the request" + (
                f" using {', '.join(tools)}" if tools else ""), "moderate",
                ["understand_request"], ["requirements"], ["draft"], tools=tools),
            _step("format_output", "Present the final answer", "simple", ["execute_task"],
                  ["draft"], ["answer"], contract=True),
        ]
    return {"steps": steps}


# --------------------------------------------------------------------------- reasoning


def _deps_text(hints: dict[str, Any]) -> str:
    deps = hints.get("dependency_outputs") or {}
    return "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"[:300]
                     for k, v in deps.items())


def reason_text(task: str, hints: dict[str, Any]) -> str:
    step = hints.get("step") or "step"
    domain = _domain(task)
    if domain == "lead":
        b = bant(task)
        f = b["facts"]
        if step == "retrieve_context":
            mem = hints.get("memories") or []
            known = "; ".join(mem[:5]) if mem else "no stored memories about this lead yet"
            return f"Known context on {f['name']} at {f['company']}: {known}."
        if step == "research_lead":
            return (f"{f['name']} is {f['title'] or 'in an unstated role'} at {f['company']}. "
                    f"Stated interest: {f['interest'] or 'not stated'}. The offline model performs "
                    "no web research; this profile restates the request.")
        if step == "assess_bant":
            return "; ".join(f"{k.title()}: {v}" for k, v in b["bant_assessment"].items()) + (
                f". Score {b['score']}/100.")
        if step == "generate_recommendation":
            tier, action = recommendation(b["score"], f)
            return f"{tier.title()} lead (score {b['score']}). {action}"
    if domain == "research":
        topic = _topic(task)
        if step == "gather_information":
            return (f"Sources on {topic}: none retrieved by the offline model (no network); "
                    "the analysis below works from the request alone.")
        if step == "identify_trends":
            return f"Trends to examine for {topic}: adoption, investment, competition, regulation."
        if step == "analyze_findings":
            return "; ".join(_findings(topic))
    desc = hints.get("step_description") or step
    basis = _deps_text(hints)
    return f"{desc}: done for the request \"{task[:200]}\"" + (f" using {basis}" if basis else "") + "."


def _topic(task: str) -> str:
    m = re.search(r"(?:on|about|into|for|of)\s+(.+)$", task.strip().rstrip("."), re.I)
    return (m.group(1) if m else task).strip()[:120]


def _findings(topic: str) -> list[str]:
    return [
        f"Demand for {topic} depends on measurable return on investment",
        f"Competition in {topic} is concentrated among a few well-funded players",
        f"Regulation and data access shape what is possible in {topic}",
    ]


def contract_output(task: str, schema: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    domain = _domain(task)
    values: dict[str, Any] = {}
    if domain == "lead":
        b = bant(task)
        tier, action = recommendation(b["score"], b["facts"])
        f = b["facts"]
        values = {
            "score": b["score"], "bant_assessment": b["bant_assessment"],
            "recommended_action": action, "tier": tier,
            "lead_summary": f"{f['name']}, {f['title'] or 'role unknown'} at {f['company']}",
        }
    elif domain == "research":
        topic = _topic(task)
        findings = _findings(topic)
        values = {
            "summary": (f"Overview of {topic}. " + " ".join(s + "." for s in findings) +
                        " Produced offline from the request alone; verify with real sources."),
            "sources": ["offline model: no sources retrieved (no network access)"],
            "key_findings": findings,
        }
    out = {}
    for name, prop in props.items():
        out[name] = values[name] if name in values else instance_for(prop, task, name=name)
    return out


def feedback_text(request: LLMRequest, hints: dict[str, Any]) -> str:
    problems = hints.get("problems") or []
    lines = ["Fix the output so that it satisfies the contract:"]
    lines += [f"- {p}" for p in problems] or ["- re-check every deliverable"]
    lines.append("Return one JSON object with every required deliverable.")
    return "\n".join(lines)


def extract_facts(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    task = str(hints.get("task") or "")
    success = hints.get("success", True)
    conf = 0.9 if success else 0.6
    facts: list[dict[str, Any]] = []
    domain = _domain(task)
    if domain == "lead":
        b = bant(task)
        f = b["facts"]
        tier, _ = recommendation(b["score"], f)
        if f["title"]:
            facts.append({"content": f"{f['name']} is {f['title']} at {f['company']}",
                          "type": "fact", "confidence": conf, "category": "contacts"})
        if f["interest"]:
            facts.append({"content": f"{f['company']} is interested in {f['interest']}",
                          "type": "preference", "confidence": conf, "category": "accounts"})
        facts.append({"content": f"Lead {f['name']} ({f['company']}) was qualified as {tier} with "
                      f"score {b['score']}", "type": "event", "confidence": conf,
                      "category": "qualifications"})
        facts.append({"content": "Decision makers asking about an enterprise plan qualify as "
                      "hot leads", "type": "pattern", "confidence": round(conf - 0.2, 2),
                      "category": "sales_playbook"})
    elif domain == "research":
        topic = _topic(task)
        facts.append({"content": f"Research was requested on {topic}", "type": "event",
                      "confidence": conf, "category": "research"})
        for finding in _findings(topic)[:2]:
            facts.append({"content": finding, "type": "fact", "confidence": round(conf - 0.3, 2),
                          "category": "research"})
    else:
        facts.append({"content": f"Handled the request: {task[:160]}", "type": "event",
                      "confidence": conf, "category": "tasks"})
    return {"facts": facts}


def filter_memories(request: LLMRequest, hints: dict[str, Any]) -> dict[str, Any]:
    task_words = set(re.findall(r"[a-z]{3,}", str(hints.get("task", "")).lower()))
    memories = [str(m) for m in hints.get("memories") or []]
    limit = int(hints.get("limit", 10))
    scored = sorted(range(len(memories)), key=lambda i: (
        -len(task_words & set(re.findall(r"[a-z]{3,}", memories[i].lower()))), i))
    return {"indices": sorted(scored[:limit])}


def answer_text(request: LLMRequest, hints: dict[str, Any]) -> str:
    task = str(hints.get("task") or _task_of(request))
    mem = hints.get("memories") or []
    if mem:
        return f"From what Sigil remembers: {mem[0]}"
    return (f"The offline model cannot look this up: \"{task[:200]}\". "
            "Configure a real provider (ANTHROPIC_API_KEY) for a factual answer.")


def _chain_of_thought(request: LLMRequest, hints: dict[str, Any]) -> str | None:
    if request.schema:
        return None
    task = str(hints.get("task") or "")
    answer = reason_text(task, hints)
    steps = [f"1. The step asks: {hints.get('step_description') or hints.get('step')}.",
             "2. Use the results of earlier steps and any memories.",
             "3. State the conclusion plainly."]
    return "Reasoning:\n" + "\n".join(steps) + f"\nAnswer: {answer}"


def _reason(request: LLMRequest, hints: dict[str, Any]) -> str | dict[str, Any]:
    task = str(hints.get("task") or "")
    if request.schema:
        return contract_output(task, request.schema, hints)
    if hints.get("strategy") == "chain_of_thought":
        return _chain_of_thought(request, hints) or reason_text(task, hints)
    return reason_text(task, hints)


_HANDLERS: dict[str, Any] = {
    "route": lambda r, h: classify(str(h.get("task") or _task_of(r))),
    "plan": lambda r, h: plan_for(str(h.get("task") or _task_of(r)), h),
    "reason": _reason,
    "contract_feedback": feedback_text,
    "extract": extract_facts,
    "memory_filter": filter_memories,
    "answer": answer_text,
}


# --------------------------------------------------------------------------- generic answers


def instance_for(schema: dict[str, Any], task: str, name: str = "value") -> Any:
    """A deterministic value that satisfies a JSON Schema (the common subset)."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return instance_for(schema[key][0], task, name)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {k: instance_for(props[k], task, k) for k in props if k in required or True}
    if typ == "array":
        n = max(1, int(schema.get("minItems", 1)))
        items = schema.get("items") or {"type": "string"}
        out = [instance_for(items, task, f"{name} {i + 1}") for i in range(n)]
        return out
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
    text = f"{name.replace('_', ' ')} for: {task[:120]}".strip()
    min_len = int(schema.get("minLength", 0))
    return text if len(text) >= min_len else text.ljust(min_len, ".")


def _generic_text(request: LLMRequest) -> str:
    task = _task_of(request)
    first = task.strip().splitlines()[0] if task.strip() else "the request"
    return f"Offline answer ({request.purpose}): {first[:300]}"
