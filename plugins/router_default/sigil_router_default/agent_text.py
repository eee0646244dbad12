"""Reading agent definitions and edits out of plain requests, without a model.

Used for what is exact in a request (a name, a known tool, contract or strategy, a quoted
description) and, with the offline provider, for the whole definition: it has no model to write
instructions, so a parsed purpose sentence is better than a schema-shaped placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

_STOP = {
    "a", "an", "the", "that", "which", "who", "to", "for", "of", "and", "or", "it", "its", "my",
    "our", "me", "us", "i", "we", "you", "should", "can", "will", "would", "could", "please",
    "new", "agent", "assistant", "bot", "chatbot", "in", "on", "with", "from", "into", "by", "at",
    "be", "is", "are", "them", "their", "this", "these", "those", "about", "using", "use", "so",
    "also", "always", "every", "each", "all", "any", "then", "when", "down", "up", "as", "do",
    "does", "named", "called", "want", "need", "like", "create", "build", "make", "set", "define",
    "design", "spin", "generate", "give", "get", "let", "one", "some", "voice", "definition",
}
_CREATION_LEAD = re.compile(
    r"^.*?\b(?:agents?|assistants?|bots?|chatbots?|copilots?)\b\s*(?:named\s+\S+\s*|called\s+\S+"
    r"\s*)?[:,-]?\s*(?:that|which|who|to|for|it\s+should|whose\s+job\s+is\s+to)?\s*", re.IGNORECASE)
_EXPLICIT_NAME = re.compile(
    r"\b(?:named|called|name\s+it|call\s+it)\s+[\"'`]?([^\s\"'`,;:]+)", re.IGNORECASE)
_NEW_AGENT_COLON = re.compile(r"\bnew\s+agent\s*:\s*([A-Za-z][\w\-]*)\s+(?:that|which|who)\b",
                              re.IGNORECASE)


def explicit_name(task: str) -> str | None:
    """A name the user gave ("named X", "called X", "New agent: X that ..."), unvalidated:
    path characters must reach the validator and fail there, not be silently cleaned."""
    m = _EXPLICIT_NAME.search(task) or _NEW_AGENT_COLON.search(task)
    return m.group(1).rstrip(".!?") if m else None


def purpose_clause(task: str) -> str:
    """What the agent is for: the request after "an agent that ..."."""
    return purpose_parts(task)[1]


def purpose_parts(task: str) -> tuple[str, str]:
    """("that", "tracks competitor pricing") from "Make an agent that tracks competitor
    pricing": the connector keeps a sentence built around the clause grammatical."""
    text = " ".join(task.split())
    rest = _CREATION_LEAD.sub("", text, count=1) if _CREATION_LEAD.search(text) else text
    lead = _CREATION_LEAD.search(text)
    connector = "that"
    if lead:
        m = re.search(r"\b(that|which|who|to|for|it\s+should|whose\s+job\s+is\s+to)\s*$",
                      lead.group(0).strip() + " ", re.IGNORECASE)
        if m:
            word = m.group(1).lower()
            connector = {"which": "that", "who": "that", "it should": "that should",
                         "whose job is to": "that can"}.get(" ".join(word.split()), word)
    m = re.match(r"^[A-Za-z][\w\-]*\s+(that|which|who)\s+", rest)  # "translator that ..."
    if m:
        rest = rest[m.end():]
    rest = re.sub(r"^(?:that|which|who)\s+", "", rest).strip(" .!?")
    if not rest and not lead:
        rest = text.strip(" .!?")
    return connector, rest


def derive_name(task: str) -> str:
    """A valid agent name from the words that say what the agent does."""
    m = re.search(r"\b(?:an?|new)\s+((?:[\w\-]+\s+){1,2}?)(?:agent|assistant|bot|chatbot)\b",
                  task, re.IGNORECASE)
    if m:
        words = [w for w in re.findall(r"[a-z0-9]+", m.group(1).lower()) if w not in _STOP]
        if words:
            return _slug(words + ["agent"])
    words = [w for w in re.findall(r"[a-z0-9]+", purpose_clause(task).lower())
             if w not in _STOP and not w.isdigit()]
    return _slug(words[:3] or ["custom", "agent"])


def _slug(words: list[str]) -> str:
    name = "_".join(words)[:60].strip("_")
    if not name or not name[0].isalpha():
        name = "agent_" + name
    return name[:64]


def unique_name(base: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if base not in taken:
        return base
    n = 2
    while f"{base[:60]}_{n}" in taken:
        n += 1
    return f"{base[:60]}_{n}"


def mentioned(task: str, names: Iterable[str]) -> list[str]:
    """Known names the request mentions, with '_' also written as a space or '-'."""
    low = task.lower()
    found = []
    for name in sorted(set(names), key=len, reverse=True):
        pattern = r"[ _\-]".join(re.escape(p) for p in re.split(r"[ _\-]", name.lower()))
        if re.search(rf"(?<![\w\-]){pattern}(?![\w\-])", low):
            found.append(name)
    return sorted(found, key=lambda n: low.find(n.lower().split("_")[0]))


#: Contract templates whose domain a request's words point to (only used if registered).
CONTRACT_HINTS: tuple[tuple[str, str], ...] = (
    (r"\b(?:qualif\w*|leads?|bant|prospects?)\b", "lead_qualification"),
    (r"\b(?:appointments?|bookings?|book|schedul\w*)\b", "appointment_booking"),
    (r"\b(?:compliance|compliant|gdpr|hipaa|regulat\w*)\b", "compliance_check"),
    (r"\bmarket\s+(?:analysis|research|size|sizing)\b|\bcompetitors?\b", "market_analysis"),
    (r"\b(?:research\w*|report|sources|papers|investigat\w*)\b", "research_report"),
)


def contract_for(task: str, contracts: Iterable[str]) -> str | None:
    contracts = set(contracts)
    named = mentioned(task, contracts)
    if named:
        return named[0]
    low = task.lower()
    for pattern, name in CONTRACT_HINTS:
        if name in contracts and re.search(pattern, low):
            return name
    return None


@attrs.define
class AgentEdit:
    """The changes a modify request asks for, as far as they can be read exactly."""

    add_tools: list[str] = attrs.Factory(list)
    remove_tools: list[str] = attrs.Factory(list)
    contract: str | None = None
    strategies: list[str] = attrs.Factory(list)
    description: str | None = None
    #: A behavioural directive for the instructions ("always cite three sources").
    directive: str | None = None

    @property
    def structured(self) -> bool:
        return bool(self.add_tools or self.remove_tools or self.contract or self.strategies
                    or self.description)


_REMOVE = re.compile(r"\b(?:remove|drop|delete|take\s+away|without|stop\s+using|no\s+longer\s+"
                     r"use)\b", re.IGNORECASE)


def parse_edit(task: str, agent_name: str, tools: Iterable[str], contracts: Iterable[str],
               strategies: Iterable[str]) -> AgentEdit:
    """Read the exact edits out of a modify request."""
    edit = AgentEdit()
    text = " ".join(task.split())
    for tool in mentioned(text, tools):
        pattern = r"[ _\-]".join(re.escape(p) for p in re.split(r"[ _\-]", tool.lower()))
        where = re.search(pattern, text.lower())
        if where is None:
            continue
        before = text.lower()[: where.start()]
        if _REMOVE.search(before[-40:]):
            edit.remove_tools.append(tool)
        else:
            edit.add_tools.append(tool)
    named_contracts = [c for c in mentioned(text, contracts) if c != agent_name]
    if named_contracts:
        edit.contract = named_contracts[0]
    edit.strategies = [s for s in mentioned(text, strategies) if s != agent_name]
    quoted = re.search(r"\bdescription\b[^\"'“‘]{0,30}[\"'“‘]([^\"'”’]{3,300})[\"'”’]", text, re.IGNORECASE)
    if quoted:
        edit.description = quoted.group(1).strip()
    if not (edit.structured):
        edit.directive = directive_of(text, agent_name)
    return edit


def directive_of(task: str, agent_name: str) -> str | None:
    """The behaviour asked for: "modify the researcher agent to always cite sources" ->
    "Always cite sources."."""
    name_pat = r"[ _\-]".join(re.escape(p) for p in re.split(r"[ _\-]", agent_name))
    text = re.sub(rf"(?i)^.*?\b{name_pat}(?:'s)?\b(?:\s+(?:agent|assistant|bot))?\s*", "", task,
                  count=1).strip()
    text = re.sub(r"(?i),?\s*(?:please\s+)?update\s+it\.?$", "", text).strip()
    text = re.sub(r"(?i)^(?:so\s+that|so\s+it|so|to|should|must|:|,|-)\s*", "", text).strip()
    text = re.sub(r"(?i)^(?:it\s+)?(?:should|must|will)\s+", "", text).strip()
    if len(text.split()) < 2:
        return None
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
