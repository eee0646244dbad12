"""The fast path: a local, zero-token classifier of intent and complexity.

It scores the four intents with weighted features (keywords, patterns, length, question form,
names of known agents), turns the scores into probabilities with a softmax and reports the top
intent's probability as its confidence. The router trusts it only above a configurable
threshold; everything else goes to one LLM call. Every feature that fired is kept as a short
reason, so the log says *why* the fast path decided.

Complexity is estimated from the original design's heuristics: how many sub-tasks the request
chains, how long it is, whether it needs analysis, the outside world (bookings, e-mail, the web),
or carries high stakes (legal, medical, security, money).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import attrs

from sigil_core import INTENTS

# --------------------------------------------------------------------------- vocabulary

_AGENT_NOUN = r"(?:agents?|assistants?|bots?|chatbots?|copilots?|personas?)"
_CREATE_VERB = (r"(?:create|build|make|set\s*up|setup|define|design|spin\s*up|generate|scaffold|"
                r"register|add|write|give|need|want|develop|like|put\s+together|get|assemble)")
_MODIFY_VERB = (r"(?:modify|change|update|edit|tweak|adjust|rename|alter|revise|improve|extend|"
                r"reconfigure|fix|amend|retrain|switch|replace|upgrade|remove|delete|drop|add|"
                r"let|make|give|teach|tell)")
_RUN_VERB = r"(?:use|run|ask|have|get|with|using|via|through)"

_TASK_VERBS = {
    "qualify", "research", "analyze", "analyse", "write", "draft", "summarize", "summarise",
    "compare", "find", "book", "schedule", "plan", "prepare", "compile", "investigate",
    "evaluate", "assess", "review", "audit", "send", "email", "outline", "produce", "develop",
    "estimate", "forecast", "identify", "generate", "score", "rank", "translate", "build",
    "design", "create", "make", "organize", "organise", "collect", "gather", "monitor", "track",
    "optimize", "optimise", "calculate", "extract", "classify", "rewrite", "edit", "proofread",
    "propose", "recommend", "list", "search", "look", "check", "test", "debug", "refactor",
    "implement", "migrate", "negotiate", "contact", "call", "reply", "respond", "post",
    "publish", "brainstorm", "map", "model", "simulate", "benchmark", "scrape", "crawl",
}
_ANALYTIC = re.compile(
    r"\b(?:analy[sz]e|analysis|compare|comparison|evaluate|evaluation|assess|assessment|"
    r"investigate|research|strategy|strategic|optimi[sz]e|forecast|model|trade-?offs?|"
    r"root\s+cause|diagnos\w*|recommend\w*|stress-test|scenarios?|prioriti[sz]e|propose|"
    r"audit|remediation|go-to-market)\b")
_HIGH_STAKES = re.compile(
    r"\b(?:legal|law|lawsuit|compliance|compliant|regulat\w*|gdpr|hipaa|medical|clinical|"
    r"health|financial|finance|revenue|security|secure|vulnerab\w*|production|prod|"
    r"mission[- ]critical|critical|high[- ]stakes|liabilit\w*|risks?|safety|audit|tax|"
    r"contract|board)\b")
# Verbs that act on the world (not "email" or "post": mostly nouns in requests).
_OUTSIDE_WORLD = re.compile(
    r"\b(?:book|reserve|schedule|send|call|phone|buy|purchase|order|pay|deploy|publish|browse|"
    r"scrape|crawl|search\s+the\s+web|web\s+search|contact|invite|"
    r"e-?mail\s+(?:it|them|this|me|him|her|us|the|a|to))\b")
# What the request produces: heavy deliverables need judgement, light ones are one shot.
_HEAVY = re.compile(
    r"\b(?:report|analysis|plan|model|strategy|proposal|research|study|audit|assessment|"
    r"forecast|roadmap|qualify|score|evaluation|review|due\s+diligence)\b")
_LIGHT = re.compile(
    r"\b(?:haiku|poem|tweet|email|e-mail|message|note|sentence|title|slogan|joke|list|ideas|"
    r"outline|checklist|summary|paragraph|greeting|caption)\b")
_QUESTION_START = re.compile(
    r"^(?:what(?:'s|s)?|who(?:'s)?|whom|whose|when|where|which|why|how|is|are|was|were|do|does|"
    r"did|can|could|should|would|will|has|have|define|tell\s+me|explain|convert|name)\b")
_SEQUENCERS = re.compile(r"\b(?:then|and\s+then|after\s+that|finally|also|next)\b|;|:\s|\n|"
                         r"(?:^|\s)(?:\d+[.)]|[-*•])\s")
_LIST_AND = re.compile(r",\s*(?:and\s+)?|\band\b")
_ATTACHED_CONTENT = re.compile(r"[:\"'“].{25,}")
# Greetings and chit-chat: a whole request of a few words of social talk.
_CHIT_CHAT = re.compile(
    r"^(?:hi|hello|hey|heya|hiya|howdy|yo|hola|greetings|good\s+(?:morning|afternoon|evening|day)|"
    r"thanks?(?:\s+you)?|thx|cheers|bye|goodbye|see\s+you|how\s+are\s+you(?:\s+doing)?|"
    r"how's\s+it\s+going|what's\s+up|sup|nice\s+to\s+meet\s+you|ok(?:ay)?|cool|great)"
    r"(?:[\s,!.?]+(?:there|sigil|all|everyone|again|so\s+much|a\s+lot|today|friend|mate))*"
    r"[\s!.?,:)(-]*$")


# The patterns classify() tries on every request, compiled once: built inline (f-strings
# around the long verb lists) they cost a string format and a cache lookup each, every run.
_WORD = re.compile(r"[a-z0-9_'\-]+")
_KEY_CHARS = re.compile(r"[ _\-]")
_AGENT_NOUN_RE = re.compile(rf"\b{_AGENT_NOUN}\b")
_NAMED = re.compile(r"\b(?:named|called|name\s+it|call\s+it)\s+[\"'`]?([^\s\"'`,;]+)")
_CREATE_A = re.compile(rf"\b{_CREATE_VERB}\b(?:\s+\w+){{0,2}}?\s+(?:a|an|new|another|me\s+an?|"
                       rf"us\s+an?)\b(?:\s+[\w\-]+){{0,4}}?\s+{_AGENT_NOUN}\b")
_NEW_AGENT = re.compile(rf"\bnew\s+(?:[\w\-]+\s+){{0,2}}{_AGENT_NOUN}\b")
_IMPERATIVE_CREATE = re.compile(
    rf"^(?:please\s+)?(?:create|build|make|define|design)\s+{_AGENT_NOUN}\b")
_DEFINITION = re.compile(rf"\b{_AGENT_NOUN}\s+definition\b")
_DEFINITE = re.compile(rf"\b(?:the|my|our|this|that|existing|current)\s+(?:[\w\-]+\s+){{0,2}}"
                       rf"{_AGENT_NOUN}\b")
_MODIFY_VERB_RE = re.compile(rf"\b{_MODIFY_VERB}\b")
_LINKING = re.compile(r"\b(?:to|from|in|of|so|more|less|too|also|use|able)\b")
_AGENT_SETTINGS = re.compile(r"\b(?:instructions?|description|tools?|contract|strateg(?:y|ies)|"
                             r"preferences?|prompt|tone|behaviou?r|persona)\b")
_FROM_NOW_ON = re.compile(r"\b(?:should|must)\s+(?:also|now|always|never)\b")
_UPDATE_IT = re.compile(r"\b(?:please\s+)?update\s+it\b|\bchange\s+it\b")
_ASKS_AGENT = re.compile(rf"\b{_RUN_VERB}\s+(?:the\s+|my\s+|our\s+)?(?:[\w\-]+\s+){{0,2}}"
                         rf"{_AGENT_NOUN}\s+(?:to|for)\b")
_TOOL_USE = re.compile(r"\b(?:to\s+use|use\s+the\s+[\w\-]+\s+tool)\b")
_BRIEF = re.compile(r"\b(?:in\s+one\s+sentence|briefly|quick(?:ly)?|short)\b")
_EXPLAIN = re.compile(r"\b(?:why|explain|how)\b")
_CLAUSE_SPLIT = re.compile(r"[,;:.]\s|\band\b|\bthen\b")
_QUOTED = re.compile(r"[\"“'‘][^\"”'’]{25,}[\"”'’]")


@attrs.define(frozen=True)
class Classification:
    """The fast path's verdict on one request."""

    intent: str
    confidence: float
    complexity: float
    reason: str
    scores: dict[str, float]
    #: An agent name the request refers to (a known agent, or one it asks to create).
    agent_name: str | None = None


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _key(name: str) -> str:
    return _KEY_CHARS.sub("", name.lower())


def _softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    exps = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(exps.values())
    return {k: v / total for k, v in exps.items()}


class Classifier:
    """A local intent/complexity classifier; ``known_agents`` sharpens modify-vs-create.

    The weights are in "nats": a single decisive feature (weight ~3) against three idle intents
    already gives a confidence near 0.87; a contradicting feature pulls it under the threshold,
    which is the point — unclear requests go to the LLM.
    """

    def __init__(self, known_agents: Iterable[str] = ()) -> None:
        self.known_agents = sorted({a.lower() for a in known_agents}, key=len, reverse=True)
        self._known_re = None
        # lead_qualifier is also written "lead qualifier" or "lead-qualifier".
        self._by_key = {_key(a): a for a in self.known_agents}
        if self.known_agents:
            alternatives = [r"[ _\-]".join(re.escape(p) for p in re.split(r"[ _\-]", name))
                            for name in self.known_agents]
            self._known_re = re.compile(r"\b(" + "|".join(alternatives) + r")\b")

    # ----------------------------------------------------------------- intent

    def classify(self, task: str) -> Classification:
        text = " ".join(task.lower().split())
        words = _words(text)
        n = len(words)
        scores = {intent: 0.0 for intent in INTENTS}
        reasons: dict[str, list[str]] = {intent: [] for intent in INTENTS}

        def add(intent: str, weight: float, why: str) -> None:
            scores[intent] += weight
            reasons[intent].append(why)

        known = self._known_re.search(text) if self._known_re else None
        known_name = self._by_key[_key(known.group(1))] if known else None
        agent_noun = _AGENT_NOUN_RE.search(text)
        refers_to_agent = bool(agent_noun or known)
        first = words[0] if words else ""
        named = _NAMED.search(text)

        # --- create_agent: a creation verb with an indefinite/new agent noun.
        if _CREATE_A.search(text):
            add("create_agent", 4.0, "creation verb with 'a/new ... agent'")
        elif _NEW_AGENT.search(text):
            add("create_agent", 3.0, "'new agent'")
        elif _IMPERATIVE_CREATE.search(text):
            add("create_agent", 3.5, "imperative 'create agent'")
        if _DEFINITION.search(text):
            add("create_agent", 1.0, "asks for an agent definition")
        if named and agent_noun and not known:
            add("create_agent", 1.0, "names the agent to create")

        # --- modify_agent: a change verb aimed at an existing agent.
        definite = _DEFINITE.search(text)
        target_existing = bool(definite or known)
        mod_verb = _MODIFY_VERB_RE.search(text)
        if target_existing and mod_verb:
            verb = mod_verb.group(0)
            weak = verb in ("add", "make", "give", "let", "tell", "remove", "delete", "drop")
            if weak:
                # "make the researcher agent more thorough" edits it; "remove the email tool
                # from the support agent" too; but "let's make a report" does not.
                if _LINKING.search(text):
                    target = "the agent" if definite else known_name
                    add("modify_agent", 3.0, f"'{verb} ... {target}'")
                else:
                    add("modify_agent", 1.5, f"'{verb}' near an existing agent")
            else:
                add("modify_agent", 4.0, f"'{verb}' aimed at "
                    + ("an existing agent" if definite else f"known agent {known_name}"))
        if known and mod_verb:
            add("modify_agent", 1.0, f"names existing agent {known_name}")
        if target_existing and _AGENT_SETTINGS.search(text):
            add("modify_agent", 1.5, "mentions an agent's settings")
        if target_existing and _FROM_NOW_ON.search(text):
            add("modify_agent", 1.5, "says how the agent should behave from now on")
        if _UPDATE_IT.search(text) and target_existing:
            add("modify_agent", 1.0, "'update it'")
        if first in ("modify", "update", "edit", "tweak", "adjust", "rename", "revise") and \
                refers_to_agent:
            add("modify_agent", 1.0, f"starts with '{first}'")

        # --- execute_task: using an agent, or an imperative task verb.
        if _ASKS_AGENT.search(text) or (
                known and re.search(rf"\b{_RUN_VERB}\s+(?:the\s+)?{re.escape(known.group(1))}\s+"
                                    rf"(?:agent\s+)?(?:to|for)\b", text)
                and not _TOOL_USE.search(text)):
            add("execute_task", 4.0, "asks an agent to do something")
            scores["modify_agent"] -= 2.0
        lead = first if first != "please" or len(words) < 2 else words[1]
        if lead in _TASK_VERBS:
            weight = 2.5 if not refers_to_agent else 0.5
            add("execute_task", weight, f"imperative task verb '{lead}'")
        if _ATTACHED_CONTENT.search(task) and n > 8:
            add("execute_task", 1.0, "carries material to work on")
        steps = len(_SEQUENCERS.findall(text)) + max(0, len(_LIST_AND.findall(text)) - 1)
        if steps >= 2 and not refers_to_agent:
            add("execute_task", 1.5, f"{steps + 1} chained parts")
        if n > 25 and not refers_to_agent:
            add("execute_task", 1.5, f"long request ({n} words)")
        if _ANALYTIC.search(text) and not refers_to_agent:
            add("execute_task", 1.0, "needs analysis")

        # --- simple_query: chit-chat is answered directly, like a short question.
        if _CHIT_CHAT.match(text):
            add("simple_query", 4.0, "greeting or chit-chat")

        # --- simple_query: a short question without task or agent words.
        question = text.endswith("?") or bool(_QUESTION_START.search(text))
        if question and not refers_to_agent:
            if n <= 14:
                add("simple_query", 3.5, f"short question ({n} words)")
            elif n <= 22:
                add("simple_query", 1.5, f"question ({n} words)")
            if _ANALYTIC.search(text) or steps >= 2:
                add("simple_query", -2.0, "but asks for analysis or several parts")
            if _BRIEF.search(text):
                add("simple_query", 1.0, "asks for a brief answer")
        if lead in _TASK_VERBS and not question:
            scores["simple_query"] -= 1.0

        # A request that only mentions an agent in passing and matches nothing else is not
        # decisive either way; the softmax keeps it under the threshold.
        probs = _softmax(scores)
        intent = max(probs, key=lambda k: (probs[k], k == "execute_task"))
        agent_name = known_name if intent == "modify_agent" else (
            named.group(1).strip(".!?") if intent == "create_agent" and named else None)
        why = "; ".join(reasons[intent]) or "no decisive feature"
        complexity = self.complexity(task, intent)
        return Classification(intent, round(probs[intent], 4), complexity, why,
                              {k: round(v, 4) for k, v in probs.items()}, agent_name)

    # ----------------------------------------------------------------- complexity

    def complexity(self, task: str, intent: str) -> float:
        """Estimate complexity 0.0-1.0 for ``task`` under ``intent``.

        Only the instruction counts: material attached after a colon or in quotes ("summarize
        this: <three pages>") makes a request longer, not harder.
        """
        text = " ".join(task.lower().split())
        if intent == "execute_task":
            text = _instruction(text)
        words = _words(text)
        n = len(words)
        sequenced = len(_SEQUENCERS.findall(text))
        subtasks = max(_clause_verbs(text) - 1, sequenced)
        analytic = len(set(_ANALYTIC.findall(text)))
        stakes = len(set(_HIGH_STAKES.findall(text)))
        outside = len(set(_OUTSIDE_WORLD.findall(text)))
        if intent == "simple_query":
            value = 0.05 + min(0.1, n / 150) + (0.05 if _EXPLAIN.search(text)
                                                else 0.0) + 0.05 * min(analytic, 2)
            return round(min(value, 0.45), 2)
        if intent == "modify_agent":
            return round(min(0.15 + min(0.1, n / 200) + 0.05 * subtasks, 0.5), 2)
        if intent == "create_agent":
            return round(min(0.25 + min(0.1, n / 150) + 0.04 * subtasks + 0.04 * stakes
                             + 0.03 * outside, 0.65), 2)
        items = len(_LIST_AND.findall(text))
        value = 0.22 + min(0.15, n / 120)
        value += 0.1 * min(3, subtasks)
        value += 0.03 * min(5, items)
        value += 0.08 * min(3, analytic)
        value += 0.06 * min(3, stakes)
        value += 0.08 if _HEAVY.search(text) else 0.0
        value -= 0.1 if _LIGHT.search(text) else 0.0
        if outside:
            # Acting on the world needs the act-observe loop: react's range at least.
            value = max(value, 0.7) + 0.05 * (outside - 1)
        return round(min(max(value, 0.0), 1.0), 2)


def _clause_verbs(text: str) -> int:
    """How many clauses start with a task verb ("find venues, estimate costs and book ...")."""
    count = 0
    for clause in _CLAUSE_SPLIT.split(text):
        words = [w for w in _words(clause) if w not in ("please", "also", "then", "finally")]
        if words and words[0] in _TASK_VERBS:
            count += 1
    return count


def _instruction(text: str) -> str:
    """The request without the material it carries (text after a colon, quoted passages)."""
    text = _QUOTED.sub(" ", text)
    head, sep, tail = text.partition(": ")
    if sep and len(_words(tail)) > 6 and len(_words(head)) >= 2 and not (
            set(_words(tail)) & _TASK_VERBS):
        return head
    return text
