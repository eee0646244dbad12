"""The ``mcts`` strategy: :func:`.mcts_search.mcts` wired to a Sigil run, for critical plan steps.

It shares the Tree of Thoughts strategy's model calls (the same ``tot_propose`` proposals and
``tot_value`` judgements, the same final ``reason`` call with the step's output schema) and its
token bookkeeping; what differs is the search: instead of a fixed number of levels of a
fixed breadth, simulations go where the values point (UCT), so a promising line gets deeper
before a poor one gets a second look.

Parameters: the ``mcts:`` config section (:class:`MCTSParams`), with per-agent and per-step
overrides as for ``tree_of_thoughts``.

Budget: the number of simulations shrinks with the reasoning allocation. Before each
simulation the search estimates what one costs (calls per expansion x the mean tokens per call
so far) and starts it only if its share (``budget_share`` of the reasoning allocation left when
the step started, and never more than what the component has left) still pays for it and the
final call. A refused call (BudgetExhaustedError) ends the search with the tree so far.

Events: a debug "Expanding node <id>" per expansion (operation id ``<strategy op>.n<node id>``,
parent the node it grew from, metadata: node ids, depth, visits, value, the thought), a debug
"Simulation i/n" per simulation (leaf, end node, score, the path's visits and values), and the
completion event's metadata (``simulations``, ``chosen_path``, ``tree`` with visits and values).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import attrs

from .mcts_search import MCTSNode, MCTSResult, Simulation, mcts
from .params import step_params
from .strategy import (
    _node_summary,
    _one_line,
    _StepSearch,
    thoughts_of,
    value_confidence,
)

SECTION = "mcts"


@attrs.define(frozen=True)
class MCTSParams:
    """The search's settings. Defaults are for plan steps: a few simulations, short paths."""

    #: Simulations at most (fewer when the budget share runs out, or the tree is exhausted).
    n_simulations: int = 8
    #: Proposals asked for per expansion.
    n_generate_sample: int = 3
    #: Judgements per new state (summed on the reference's scale, then mapped to [0, 1]).
    n_evaluate_sample: int = 1
    #: Thoughts in a complete solution.
    depth: int = 3
    #: The UCT exploration constant (LATS uses 1.0).
    c: float = 1.0
    #: Extra levels expanded greedily after an expansion (null: down to a complete solution,
    #: as LATS; 0: none).
    rollout_depth: int | None = 0
    #: Simulations in flight at once (virtual loss keeps them apart).
    concurrency: int = 2
    #: Ask the model what went wrong on complete paths judged poor, and give the lessons to
    #: later proposals (LATS's self-reflection). Costs one call per such path.
    reflection: bool = False
    temperature: float = 0.7
    max_tokens: int = 512
    #: Share of the reasoning allocation left when the step starts that the search may spend.
    budget_share: float = 0.5
    #: Seeds the tie-breaking between equal UCT scores (with concurrency 1, the same tree).
    seed: int | None = 0
    #: Caps the proposals kept per expansion (null: all, as ToT's propose).
    max_proposals: int | None = 4
    #: ``keep`` or ``drop`` a thought proposed twice for the same parent.
    duplicate_thoughts: str = "drop"

    def __attrs_post_init__(self) -> None:
        for key in ("n_simulations", "n_generate_sample", "n_evaluate_sample", "depth",
                    "concurrency", "max_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, not {getattr(self, key)!r}")
        if self.c < 0:
            raise ValueError(f"c must be >= 0, not {self.c!r}")
        if self.rollout_depth is not None and self.rollout_depth < 0:
            raise ValueError(f"rollout_depth must be >= 0 or null, not {self.rollout_depth!r}")
        if self.max_proposals is not None and self.max_proposals < 1:
            raise ValueError(f"max_proposals must be at least 1 or null, not {self.max_proposals!r}")
        if self.duplicate_thoughts not in ("keep", "drop"):
            raise ValueError(f"duplicate_thoughts must be keep or drop, "
                             f"not {self.duplicate_thoughts!r}")
        if not 0 < self.budget_share <= 1:
            raise ValueError(f"budget_share must be in (0, 1], not {self.budget_share!r}")

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def levels(self, complexity: str | None) -> int:
        """Thoughts in a complete path: ``depth``, whatever the step's complexity."""
        return self.depth


class MCTSStrategy:
    """Monte Carlo Tree Search (LATS / RAP style) over a plan step's lines of reasoning."""

    name = "mcts"

    def params_for(self, run: Any, step: Any, context: Any) -> MCTSParams:
        return cast("MCTSParams", step_params(run, step, context, cls=MCTSParams, name=SECTION))

    async def execute(self, run: Any, step: Any, context: Any) -> Any:
        from sigil_core import ReasoningResult

        params = self.params_for(run, step, context)
        search = _MCTSSearch(run, step, context, params)
        result = await search.explore()
        best = result.best
        path = [_one_line(n.thought) for n in best.path]
        confidence = best.value if best is not result.root else 0.3
        stopped = result.stopped if result.stopped not in (None, "solved") else None
        output, refused = await search.answer(path)
        if refused:
            stopped = stopped or "BudgetExhaustedError"
            confidence = min(confidence, 0.5)
        metadata: dict[str, Any] = {
            "simulations": result.simulations,
            "branches_explored": result.expansions,
            "chosen_path": path,
            "nodes": len(result.nodes) - 1,
            "mcts_params": params.as_dict(),
            "tree": [_mcts_node_summary(n) for n in result.nodes[1:]],
            "search_tokens": search.spent,
        }
        if result.reflections:
            metadata["reflections"] = result.reflections
        if stopped:
            metadata["stopped_early"] = stopped
        run.annotate(branches_explored=result.expansions, chosen_path=path,
                     simulations=result.simulations, confidence=round(confidence, 4))
        return ReasoningResult(output=output, confidence=round(confidence, 4), tool_params={},
                               metadata=metadata)


def _mcts_node_summary(node: MCTSNode) -> dict[str, Any]:
    d = _node_summary(node)  # type: ignore[arg-type]  # same id/parent/thought shape
    d.update(visits=node.visits, value=round(node.value, 4), prior=node.prior,
             terminal=node.terminal)
    return d


class _MCTSSearch(_StepSearch):
    """The callables of one step's MCTS, on top of the ToT step search's model calls."""

    def __init__(self, run: Any, step: Any, context: Any, params: MCTSParams) -> None:
        super().__init__(run, step, context, params)  # type: ignore[arg-type]
        self.mp = params  # the same object as self.p, with the MCTS settings' type
        self.hints = {**self.hints, "strategy": "mcts"}

    async def generate(self, x: str, state: str, reflections: Sequence[str]) -> list[str]:
        if reflections:
            x = (x + "\n\nLessons from earlier lines of reasoning that were judged poor:\n"
                 + "\n".join(f"- {r}" for r in reflections))
        return await self.propose(x, state)

    async def evaluate(self, x: str, states: Sequence[str]) -> list[float]:
        raw = await asyncio.gather(*(self.value(x, s) for s in states))
        values = [value_confidence(v, self.mp.n_evaluate_sample) for v in raw]
        self.run.event(
            "debug", "reasoning", "mcts", f"Evaluated {len(states)} candidate thoughts",
            metadata={"step_name": self.step.name, "values": [round(v, 4) for v in values]},
        )
        return values

    async def reflect(self, x: str, state: str) -> str | None:
        prompt = (
            f"{x}\n\nThis line of reasoning was judged unlikely to produce a correct and "
            f"complete output:\n{_numbered_thoughts(state)}\n\n"
            "In one sentence, say what went wrong and what to do differently."
        )
        result = await self._ask(prompt, purpose="mcts_reflect", thoughts=thoughts_of(state))
        text = _one_line(result.text)
        return text or None

    def _calls_per_expansion(self) -> float:
        p = self.mp
        return 1 + (p.max_proposals or p.n_generate_sample) * p.n_evaluate_sample

    def proceed(self, index: int, root: MCTSNode) -> bool:
        """Whether the share still pays for one more simulation and the final call."""
        left = min(self.allowance - self.spent,
                   self.budget.component_remaining("reasoning")) - self.final_reserve()
        per = self._call_cost() * self._calls_per_expansion() * (1 + (self.mp.rollout_depth or 0))
        if left >= per:
            return True
        self.run.event(
            "debug", "reasoning", "mcts",
            f"Budget allows no more simulations after {index - 1}",
            metadata={"step_name": self.step.name, "tokens_left": left,
                      "estimated_per_simulation": per},
        )
        return False

    def _op(self, node: MCTSNode | None) -> str:
        op = self.run.current_operation()
        base = op.operation_id if op else "mcts"
        return base if node is None else f"{base}.n{node.id}"

    def on_expand_node(self, node: MCTSNode, index: int) -> None:
        self.run.event(
            "debug", "reasoning", "mcts", f"Expanding node {node.id}",
            operation_id=self._op(node), parent_operation_id=self._op(node.parent),
            metadata={"step_name": self.step.name, "simulation": index, "node_id": node.id,
                      "parent_node_id": node.parent.id if node.parent else None,
                      "depth": node.depth, "visits": node.visits,
                      "value": round(node.value, 4),
                      "thought": _one_line(node.thought)[:200]},
        )

    def on_simulation(self, sim: Simulation) -> None:
        path = sim.end.path
        self.run.event(
            "debug", "reasoning", "mcts",
            f"Simulation {sim.index}/{self.mp.n_simulations}: score {sim.score:.2f}",
            metadata={"step_name": self.step.name, "simulation": sim.index,
                      "leaf_node_id": sim.leaf.id, "end_node_id": sim.end.id,
                      "score": round(sim.score, 4), "expanded": sim.expanded,
                      "path": [{"node_id": n.id, "visits": n.visits,
                                "value": round(n.value, 4)} for n in path]},
        )

    async def explore(self) -> MCTSResult:  # type: ignore[override]
        from sigil_core import BudgetExhaustedError

        p = self.mp
        return await mcts(
            self.x, generate=self.generate, evaluate=self.evaluate,
            reflect=self.reflect if p.reflection else None,
            # Plan steps have no verifier: a complete path is scored by its value, and one
            # judged poor (below 0.5) is what reflection looks at.
            simulations=p.n_simulations, depth=p.depth, c=p.c, rollout_depth=p.rollout_depth,
            concurrency=p.concurrency, seed=p.seed, stop_on_solution=False,
            proceed=self.proceed, on_expand=self.on_expand_node,
            on_simulation=self.on_simulation, stop_on=(BudgetExhaustedError,),
        )


def _numbered_thoughts(state: str) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(thoughts_of(state), 1)) or "(none)"
