"""The ``tree_of_thoughts`` strategy: the BFS search wired to a Sigil run.

For one plan step, the problem ``x`` is the step prompt (:meth:`StepContext.prompt`) and a state
is the list of thoughts so far, one per line. Each level:

* **generate** (``tot_propose``: one call per state asking for ``n_generate_sample`` distinct
  next thoughts; or ``tot_sample``: ``n_generate_sample`` independent calls per state),
* **evaluate** (``tot_value``: ``n_evaluate_sample`` sure/likely/impossible judgements per
  state, the reference's 20/1/0.001 scale; or ``tot_vote``: ``n_evaluate_sample`` votes over
  all candidates of the level),
* **select** (greedy or sample) keeps ``n_select_sample`` states.

The number of levels follows the step's complexity unless ``depth`` is set (see
:mod:`.params`): each level waits for two calls in sequence, the proposals of every kept state
in flight together, then the level's votes in flight together. The last level's proposals are
complete candidate answers: when the step has no output schema, the chosen one is the step's
output; a step with an output schema (the contract's) gets one more ``reason`` call that writes
the chosen path in that schema, so the answer has the same shape as the other strategies'. Every call goes through ``run.llm`` with ``component="reasoning"``: the
tokens are booked to the ``tree_of_thoughts`` operation the core opened for the step.

Events: a debug "Exploring branch i/n" per expanded state (metadata: node ids, depth, the
thought), a debug "Evaluated level d" per level, and the completion event's metadata
(``branches_explored``, ``chosen_path``, ``confidence``, ``tree``) via the returned metadata
and :meth:`Run.annotate`.

Budget: before each level the search estimates what expanding one more state costs and
expands only as many as its share of the reasoning allocation still pays for (best first);
when none fit, or a call is refused (BudgetExhaustedError), it stops and answers from the best
path so far. If even the final call is refused, the best path's last thought is the output.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Sequence
from typing import Any, cast

from sigil_core import estimate_tokens

from .params import ToTParams, step_params
from .search import (
    Node,
    SearchResult,
    bfs,
    greedy,
    judgements_value,
    sampler,
    value_evaluator,
)

_ANSWER = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*", re.IGNORECASE | re.MULTILINE)
_THOUGHT_LIMIT = 600
#: A last-level thought may be the step's output: it is kept whole up to this length.
_ANSWER_LIMIT = 8000

VALUE_SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        # "likely" first: a model that ignores the question (the offline one) stays neutral.
        "judgement": {"type": "string", "enum": ["likely", "sure", "impossible"]},
    },
    "required": ["judgement"],
}


#: No maxItems: extra proposals are kept (the reference) or cut by ``max_proposals``, never a
#: reason to re-ask the model.
PROPOSE_SCHEMA = {
    "type": "object",
    "properties": {"thoughts": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["thoughts"],
}


def _vote_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"analysis": {"type": "string"},
                       "best_choice": {"type": "integer", "minimum": 1, "maximum": n}},
        "required": ["best_choice"],
    }


def thoughts_of(state: str) -> list[str]:
    return [ln for ln in state.split("\n") if ln.strip()]


def _numbered(thoughts: Sequence[str]) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(thoughts, 1)) or "(none yet)"


def _one_line(text: str, limit: int = _THOUGHT_LIMIT) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _estimate(text: str) -> int:
    return estimate_tokens(text) + 4


def value_confidence(value: float, samples: int) -> float:
    """A value on the reference's scale as a 0-1 confidence, on a log scale per judgement.

    sure -> 1.0, likely -> ~0.70, impossible -> 0.0 (averaged over the samples).
    """
    if samples <= 0 or value <= 0:
        return 0.0
    per = value / samples
    lo, hi = math.log(0.001), math.log(20.0)
    return max(0.0, min(1.0, (math.log(per) - lo) / (hi - lo)))


def vote_confidence(votes: float, samples: int) -> float:
    """0.5 with no votes, 0.95 when every vote went to the chosen state."""
    return 0.5 + 0.45 * max(0.0, min(1.0, votes / max(1, samples)))


class TreeOfThoughtsStrategy:
    """Breadth-first Tree of Thoughts (Yao et al., 2023) over a plan step.

    Parameters come from the ``tree_of_thoughts:`` config section (see :mod:`.params`),
    resolved per step and agent.
    """

    name = "tree_of_thoughts"

    def params_for(self, run: Any, step: Any, context: Any) -> ToTParams:
        return cast("ToTParams", step_params(run, step, context))

    async def execute(self, run: Any, step: Any, context: Any) -> Any:
        from sigil_core import ReasoningResult

        params = self.params_for(run, step, context)
        search = _StepSearch(run, step, context, params)
        result = await search.explore()
        path = [_one_line(n.thought) for n in result.best.path]
        confidence = search.confidence(result)

        stopped = result.stopped
        complete = len(result.levels) == search.depth and not stopped and bool(path)
        answered_from = "final_call"
        if complete and not context.output_schema:
            # The chosen last thought is a complete candidate answer (the last level asks for
            # those): a further call would only restate it.
            output, answered_from = result.best.thought.strip(), "chosen_thought"
        else:
            output, refused = await search.answer(path)
            if refused:
                stopped = stopped or "BudgetExhaustedError"
                confidence = min(confidence, 0.5)
                answered_from = "best_thought"
        metadata = {
            "branches_explored": result.expansions,
            "chosen_path": path,
            # The confidence goes in ReasoningResult.confidence; the core copies it into the
            # completion event (a "confidence" key here would clash with the core's own).
            "levels": len(result.levels),
            "answered_from": answered_from,
            "nodes": len(result.nodes) - 1,
            "tot_params": params.as_dict(),
            "tree": [_node_summary(n) for n in result.nodes[1:]],
            "search_tokens": search.spent,
        }
        if stopped:
            metadata["stopped_early"] = stopped
        if search.narrowed:
            metadata["narrowed_levels"] = search.narrowed
        run.annotate(branches_explored=result.expansions, chosen_path=path,
                     confidence=round(confidence, 4))
        return ReasoningResult(output=output, confidence=round(confidence, 4), tool_params={},
                               metadata=metadata)


def expansion_id(base: str, node_id: str, repeat: int = 0) -> str:
    """The operation id of one expansion of a node: ``<strategy op>.n<node id>[r<repeat>]``."""
    return f"{base}.n{node_id}" + (f"r{repeat}" if repeat else "")


def _node_summary(node: Node) -> dict[str, Any]:
    d = node.to_dict()
    d["thought"] = _one_line(d["thought"])[:200]
    return d


class _StepSearch:
    """The callables of one step's search, and its token bookkeeping."""

    def __init__(self, run: Any, step: Any, context: Any, params: ToTParams) -> None:
        self.run = run
        self.step = step
        self.context = context
        self.p = params
        self.x = context.prompt()
        # The task and the agent travel in the system prompt, the run's cached prefix.
        self.system = context.system() if hasattr(context, "system") else None
        self.hints = {**context.hints(), "strategy": "tree_of_thoughts"}
        self.spent = 0
        self.calls = 0
        self.budget = run.budget
        self.allowance = int(self.budget.component_remaining("reasoning") * params.budget_share)
        self.depth = params.levels(getattr(step, "complexity", None))
        self.narrowed: list[int] = []

    # ------------------------------------------------------------------ model calls

    async def _ask(self, prompt: str, *, purpose: str, schema: Any = None, **hints: Any) -> Any:
        result = await self.run.llm.generate(
            prompt, system=self.system, schema=schema, purpose=purpose, component="reasoning",
            max_tokens=self.p.max_tokens, temperature=self.p.temperature,
            hints={**self.hints, **hints},
        )
        self.spent += result.usage.total_tokens
        self.calls += result.calls
        return result

    async def propose(self, x: str, state: str) -> list[str]:
        thoughts = thoughts_of(state)
        last = len(thoughts) + 1 == self.depth
        k = self.p.n_generate_sample
        prompt = (
            f"{x}\n\nSolve this step by exploring alternative lines of reasoning.\n"
            f"Reasoning so far:\n{_numbered(thoughts)}\n\n"
            f"Propose up to {k} different next thoughts that move toward the step's output. "
            "Each is one self-contained idea or intermediate conclusion in one or two sentences."
            + (" This is the last thought: each proposal states a complete candidate answer."
               if last else "")
            + ' Reply with JSON: {"thoughts": ["...", ...]}.'
        )
        cap = self.p.max_proposals
        result = await self._ask(prompt, purpose="tot_propose", schema=PROPOSE_SCHEMA,
                                 thoughts=thoughts, k=k, last=last)
        proposals = result.value.get("thoughts", []) if isinstance(result.value, dict) else []
        if not isinstance(proposals, list):
            proposals = []
        # The reference keeps every proposal; max_proposals is the explicit cap.
        return self._children(state, proposals if cap is None else proposals[:cap],
                              limit=_ANSWER_LIMIT if last else _THOUGHT_LIMIT)

    async def sample(self, x: str, state: str) -> list[str]:
        thoughts = thoughts_of(state)
        prompt = (
            f"{x}\n\nReasoning so far:\n{_numbered(thoughts)}\n\n"
            "Write the next thought toward the step's output: one short paragraph."
        )
        results = await asyncio.gather(*(
            self._ask(prompt, purpose="tot_sample", thoughts=thoughts, sample=i)
            for i in range(self.p.n_generate_sample)))
        return self._children(state, [r.text for r in results])

    def _children(self, state: str, texts: Sequence[Any], limit: int = 0) -> list[str]:
        out: list[str] = []
        drop = self.p.duplicate_thoughts == "drop"
        for text in texts:
            line = _one_line(str(text), limit or _THOUGHT_LIMIT)
            child = state + line + "\n"
            if line and not (drop and child in out):
                out.append(child)
        return out

    async def value(self, x: str, state: str) -> float:
        thoughts = thoughts_of(state)
        prompt = (
            f"{x}\n\nA candidate line of reasoning for this step:\n{_numbered(thoughts)}\n\n"
            "Judge whether it can lead to a correct and complete output for the step: "
            "sure, likely or impossible. "
            'Reply with JSON: {"reason": "...", "judgement": "sure" | "likely" | "impossible"}.'
        )
        results = await asyncio.gather(*(
            self._ask(prompt, purpose="tot_value", schema=VALUE_SCHEMA, thoughts=thoughts,
                      sample=i)
            for i in range(self.p.n_evaluate_sample)))
        return judgements_value([
            r.value.get("judgement") if isinstance(r.value, dict) else None for r in results])

    async def vote(self, x: str, states: Sequence[str]) -> list[float]:
        if len(states) == 1:
            # Nothing to compare: no call. Counted as half the votes (see vote_confidence).
            return [self.p.n_evaluate_sample / 2]
        choices = "\n".join(f"Choice {i}:\n{_numbered(thoughts_of(s))}"
                            for i, s in enumerate(states, 1))
        prompt = (
            f"{x}\n\nCandidate lines of reasoning for this step:\n{choices}\n\n"
            "Analyse each choice, then decide which is the most promising. "
            'Reply with JSON: {"analysis": "...", "best_choice": <number>}.'
        )
        results = await asyncio.gather(*(
            self._ask(prompt, purpose="tot_vote", schema=_vote_schema(len(states)),
                      choices=[thoughts_of(s) for s in states], sample=i)
            for i in range(self.p.n_evaluate_sample)))
        votes = [0.0] * len(states)
        for r in results:
            choice = r.value.get("best_choice") if isinstance(r.value, dict) else None
            if isinstance(choice, int) and 1 <= choice <= len(states):
                votes[choice - 1] += 1
        return votes

    # ------------------------------------------------------------------ budget

    def _call_cost(self) -> int:
        if self.calls:
            return math.ceil(self.spent / self.calls)
        return _estimate(self.x) + 150 + self.p.max_tokens

    def _calls_per_expansion(self) -> float:
        p = self.p
        gen = 1 if p.method_generate == "propose" else p.n_generate_sample
        per_child = p.n_evaluate_sample if p.method_evaluate == "value" else 0
        children = p.n_generate_sample
        votes = p.n_evaluate_sample if p.method_evaluate == "vote" else 0
        return gen + children * per_child + votes

    def final_reserve(self) -> int:
        return _estimate(self.x) + 40 * self.depth + self.p.max_tokens

    def expand_limit(self, level: int, frontier: Sequence[Node]) -> int:
        """How many frontier states the remaining share pays for (0 ends the search)."""
        left = min(self.allowance - self.spent,
                   self.budget.component_remaining("reasoning")) - self.final_reserve()
        per = self._call_cost() * self._calls_per_expansion()
        k = int(left // per) if per > 0 else len(frontier)
        if k < len(frontier):
            self.narrowed.append(level)
            self.run.event(
                "debug", "reasoning", "tree_of_thoughts",
                f"Budget allows {max(0, k)} of {len(frontier)} branches at level {level}",
                metadata={"step_name": self.step.name, "level": level, "tokens_left": left,
                          "estimated_per_branch": per},
            )
        return max(0, k)

    # ------------------------------------------------------------------ the search

    async def explore(self) -> SearchResult:
        from sigil_core import BudgetExhaustedError

        p = self.p
        generate = self.propose if p.method_generate == "propose" else self.sample
        evaluate = value_evaluator(self.value) if p.method_evaluate == "value" else self.vote
        select = greedy if p.method_select == "greedy" else sampler(random.Random(p.seed))
        return await bfs(
            self.x, generate=generate, evaluate=self._logged(evaluate), select=select,
            depth=self.depth, breadth=p.n_select_sample, expand_limit=self.expand_limit,
            on_expand=self.on_expand, stop_on=(BudgetExhaustedError,),
        )

    def on_expand(self, node: Node, i: int, n: int, repeat: int = 0) -> None:
        # Each expansion is an event whose operation id names the node (and the repeat, when a
        # sampled selection drew the node more than once) and whose parent is the expansion the
        # node grew from (the strategy's operation for the root), so a monitor can rebuild the
        # thought tree from parent_operation_id alone, with one event per operation id.
        op = self.run.current_operation()
        base = op.operation_id if op else "tot"
        parent = node.parent
        self.run.event(
            "debug", "reasoning", "tree_of_thoughts", f"Exploring branch {i}/{n}",
            operation_id=expansion_id(base, node.id, repeat),
            parent_operation_id=(expansion_id(base, parent.id, node.origin)
                                 if parent is not None else base),
            metadata={"step_name": self.step.name, "branch": i, "branches": n,
                      "level": node.depth + 1, "node_id": node.id, "repeat": repeat,
                      "parent_node_id": parent.id if parent else None,
                      "thought": _one_line(node.thought)[:200], "value": node.value},
        )

    def _logged(self, evaluate: Any) -> Any:
        async def wrapped(x: str, states: Sequence[str]) -> list[float]:
            values = list(await evaluate(x, states))
            self.run.event(
                "debug", "reasoning", "tree_of_thoughts",
                f"Evaluated {len(states)} candidate thoughts",
                metadata={"step_name": self.step.name, "values": values,
                          "method": self.p.method_evaluate},
            )
            return values
        return wrapped

    def confidence(self, result: SearchResult) -> float:
        best = result.best
        if best is result.root or best.value is None:
            return 0.3
        if self.p.method_evaluate == "value":
            return value_confidence(best.value, self.p.n_evaluate_sample)
        return vote_confidence(best.value, self.p.n_evaluate_sample)

    # ------------------------------------------------------------------ the answer

    async def answer(self, path: Sequence[str]) -> tuple[Any, bool]:
        """The final call's answer, and whether the budget refused it: then the path's last
        thought is the answer."""
        from sigil_core import BudgetExhaustedError

        try:
            return await self.final_answer(path), False
        except BudgetExhaustedError:
            return (path[-1] if path else ""), True

    async def final_answer(self, path: Sequence[str]) -> Any:
        ctx = self.context
        plan = ("A search over alternative lines of reasoning chose this path:\n"
                + _numbered(path) + "\n\nUse it to produce the step's output.")
        if ctx.output_schema:
            result = await self.run.llm.generate(
                ctx.prompt(plan + " Give only the JSON."), system=self.system,
                schema=ctx.output_schema,
                purpose="reason", component="reasoning", hints={**self.hints, "thoughts": path})
            return result.value
        result = await self.run.llm.generate(
            ctx.prompt(plan + " Write your reasoning, then a final line starting with "
                       "'Answer:'."), system=self.system,
            purpose="reason", component="reasoning", hints={**self.hints, "thoughts": path})
        text = result.text.strip()
        parts = _ANSWER.split(text)
        return parts[-1].strip() if len(parts) > 1 else text
