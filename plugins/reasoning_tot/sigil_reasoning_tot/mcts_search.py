"""Monte Carlo Tree Search over thoughts, in the style of LATS and RAP, independent of Sigil.

Language Agent Tree Search (Zhou et al., 2023) and Reasoning via Planning (Hao et al., 2023) run
MCTS over partial solutions written by a language model. Each *simulation*:

1. **selects** a leaf: from the root, repeatedly the child with the highest UCT score
   ``Q/N + c * sqrt(ln N_parent / N)``, where ``Q/N`` is the child's mean value;
2. **expands** it: ``generate(x, state)`` proposes children, ``evaluate(x, states)`` values
   them (the "value prompt", a number in [0, 1]), and each child starts with that value as one
   visit (LATS's initialisation);
3. **rolls out** (optional, LATS's "simulation"): from the best new child, keeps expanding the
   best child until a terminal state or ``rollout_depth`` more levels;
4. scores the end state by its value; a terminal state is scored as it is created, by
   ``reward(x, state)`` when the task has a verifier (Game of 24's exact check);
5. **back-propagates** that score to every node on the path (visits + 1, total + score);
6. optionally **reflects** on each failed leaf: a terminal state scored below 0.5 as it is
   created, or a dead end (a state ``generate`` found no continuation for);
   ``reflect(x, state)`` returns a lesson that later ``generate`` calls receive (LATS's
   self-reflection).

The answer is the best-valued *complete* path: the terminal node with the highest mean value
(a verified one first when ``reward`` is given); with no terminal node, the path down the
highest mean values. :meth:`MCTSResult.first_verified` gives "any verified" selection.

Concurrency: ``concurrency`` simulations run at once; a simulation's path gets a *virtual loss*
(one visit of value 0 per node) while it is in flight, so the others spread over the tree
(Chaslot et al., 2008), and its expansion's ``generate`` and ``evaluate`` calls, like a level of
BFS, run concurrently. Ties between equal UCT scores are broken by a random generator seeded
with ``seed``: with ``concurrency=1`` (or callables that complete in a fixed order) the same
seed gives the same tree.

The callables::

    async def generate(x, state) -> list[str]           # children, each extending state
    async def generate(x, state, reflections) -> ...    # ... or with the lessons so far
    async def evaluate(x, states) -> list[float]        # values in [0, 1]
    def is_terminal(state) -> bool                      # a complete solution
    async def reward(x, state) -> float                 # optional verifier, in [0, 1]
    async def reflect(x, state) -> str | None           # optional self-reflection
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from .search import TreePath, breadth_first

Generate = Callable[..., Awaitable[Sequence[str]]]
Evaluate = Callable[[str, Sequence[str]], Awaitable[Sequence[float]]]
IsTerminal = Callable[[str], bool]
Reward = Callable[[str, str], Awaitable[float]]
Reflect = Callable[[str, str], Awaitable["str | None"]]
#: Called before each simulation with (index from 1, root); False stops the search (budgets).
Proceed = Callable[[int, "MCTSNode"], bool]
#: Called as a node is expanded: (node, simulation index). May return (or resolve to) an async
#: context manager, which the node's generation runs inside.
OnExpand = Callable[["MCTSNode", int], Any]
#: Called after each simulation with a :class:`Simulation`.
OnSimulation = Callable[["Simulation"], Any]


@attrs.define(eq=False)
class MCTSNode(TreePath):
    """One state of the MCTS tree (``parent`` and ``children`` are MCTSNodes)."""

    #: The value the evaluator gave the node when it was created (None for the root).
    prior: float | None = None
    visits: int = 0
    total: float = 0.0
    terminal: bool = False
    #: The reward of a terminal node scored by the verifier (None: not verified).
    reward: float | None = None
    expanded: bool = False
    #: Simulations currently passing through the node (virtual loss).
    pending: int = 0

    @property
    def value(self) -> float:
        """Mean value of the node, in [0, 1]: total / visits (0 when never visited)."""
        return self.total / self.visits if self.visits else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "visits": self.visits,
            "value": round(self.value, 6),
            "prior": self.prior,
            "terminal": self.terminal,
            "reward": self.reward,
        }


@attrs.define
class Simulation:
    """What one simulation did: the leaf it expanded, the end state it scored, the score."""

    index: int
    leaf: MCTSNode
    end: MCTSNode
    score: float
    expanded: int
    solved: bool


@attrs.define
class MCTSResult:
    """The outcome of :func:`mcts`."""

    root: MCTSNode
    simulations: int
    #: Nodes whose children were generated.
    expansions: int
    #: Why the search ended before its simulations: None, "limit", "solved", "exhausted"
    #: (nothing left to expand) or the exception's type name.
    stopped: str | None = None
    error: BaseException | None = None
    reflections: list[str] = attrs.Factory(list)

    @property
    def nodes(self) -> list[MCTSNode]:
        """Every node of the tree, breadth first."""
        return breadth_first(self.root)

    @property
    def terminals(self) -> list[MCTSNode]:
        """Terminal nodes, best first: verified ones first, then by mean value, then by id."""
        found = [n for n in self.nodes if n.terminal]
        return sorted(found, key=lambda n: (-(n.reward or 0.0), -n.value, _order(n)))

    @property
    def best(self) -> MCTSNode:
        """The best-valued complete path's end (see :attr:`terminals`); with no terminal node,
        the end of the path down the highest mean values; the root for an empty tree."""
        if self.terminals:
            return self.terminals[0]
        node = self.root
        while node.children:
            node = max(node.children, key=lambda c: (c.value, -node.children.index(c)))
        return node

    def first_verified(self, verify: Callable[[MCTSNode], bool]) -> MCTSNode | None:
        """The first terminal node (best first) that ``verify`` accepts: "any verified"."""
        return next((n for n in self.terminals if verify(n)), None)


def _order(node: MCTSNode) -> tuple[int, ...]:
    return tuple(int(p) for p in node.id.split("."))


def uct(child: MCTSNode, parent_visits: int, c: float) -> float:
    """The UCT score of ``child``; in-flight simulations count as visits of value 0."""
    n = child.visits + child.pending
    if n == 0:
        return math.inf
    return child.total / n + c * math.sqrt(math.log(max(1, parent_visits)) / n)


async def mcts(
    x: str,
    *,
    generate: Generate,
    evaluate: Evaluate,
    simulations: int,
    depth: int,
    is_terminal: IsTerminal | None = None,
    reward: Reward | None = None,
    reflect: Reflect | None = None,
    c: float = 1.0,
    rollout_depth: int | None = 0,
    concurrency: int = 1,
    seed: int | None = None,
    root: str = "",
    stop_on_solution: bool = True,
    proceed: Proceed | None = None,
    on_expand: OnExpand | None = None,
    on_simulation: OnSimulation | None = None,
    stop_on: tuple[type[BaseException], ...] = (),
) -> MCTSResult:
    """Run MCTS over thoughts and return the tree (see the module docstring).

    :param x: the problem input, handed to the callables unchanged.
    :param generate: ``async (x, state[, reflections]) -> [child_state, ...]``.
    :param evaluate: ``async (x, states) -> [value, ...]``, values in [0, 1].
    :param simulations: how many simulations at most.
    :param depth: the depth of a complete solution: a node at this depth is terminal.
    :param is_terminal: ``state -> bool``, a complete solution before ``depth`` (optional).
    :param reward: ``async (x, state) -> float`` in [0, 1] for terminal states: a verifier.
        A reward of 1 is a solution (``stop_on_solution`` then ends the search).
    :param reflect: ``async (x, state) -> lesson`` for terminal states scored below 0.5 (by
        ``reward``, else by value), once per node; the lessons are passed to later
        ``generate`` calls that accept a third argument.
    :param c: the exploration constant of UCT.
    :param rollout_depth: after an expansion, keep expanding the best child this many more
        levels (None: down to a terminal state, as LATS; 0: no rollout, as plain MCTS with a
        value function).
    :param concurrency: simulations in flight at once (virtual loss keeps them apart).
    :param seed: seeds the tie-breaking between equal UCT scores.
    :param proceed: ``(index, root) -> bool`` before each simulation; False stops the search
        with ``stopped="limit"`` (used for budgets).
    :param on_expand: called (awaited if a coroutine) as each node is expanded; if it returns
        an async context manager, the node's ``generate`` call runs inside it.
    :param on_simulation: called with each finished :class:`Simulation`.
    :param stop_on: exception types that end the search with the tree so far instead of
        propagating (e.g. a budget error); the exception is kept in ``result.error``.
    """
    if simulations < 0 or depth < 1 or concurrency < 1:
        raise ValueError("simulations must be >= 0, depth >= 1 and concurrency >= 1")
    rng = random.Random(seed)
    root_node = MCTSNode(id="0", state=root, depth=0)
    result = MCTSResult(root=root_node, simulations=0, expansions=0)
    wants_reflections = _accepts_three(generate)
    terminal = is_terminal or (lambda s: False)
    started = 0
    reflected: set[str] = set()
    expanding: dict[str, asyncio.Event] = {}
    done = asyncio.Event()

    def finish(reason: str | None, error: BaseException | None = None) -> None:
        if result.stopped is None and reason is not None:
            result.stopped, result.error = reason, error
        done.set()

    def select() -> list[MCTSNode]:
        path = [root_node]
        node = root_node
        while node.expanded and node.children:
            parent_visits = node.visits + node.pending
            scores = [uct(ch, parent_visits, c) for ch in node.children]
            top = max(scores)
            ties = [ch for ch, s in zip(node.children, scores) if s == top]
            node = ties[0] if len(ties) == 1 else rng.choice(ties)
            path.append(node)
        return path

    async def expand(node: MCTSNode, index: int) -> list[MCTSNode]:
        node.expanded = True
        expanding[node.id] = asyncio.Event()
        try:
            return await _expand(node, index)
        finally:
            expanding.pop(node.id).set()

    async def _expand(node: MCTSNode, index: int) -> list[MCTSNode]:
        scope = on_expand(node, index) if on_expand is not None else None
        if asyncio.iscoroutine(scope):
            scope = await scope
        args = (x, node.state, list(result.reflections)) if wants_reflections else (x, node.state)
        if scope is not None and hasattr(scope, "__aenter__"):
            async with scope:
                states = list(await generate(*args))
        else:
            states = list(await generate(*args))
        result.expansions += 1
        if not states:
            await reflect_on([node])  # a dead end is a failed leaf too
            return []
        values = [float(v) for v in await evaluate(x, states)]
        if len(values) != len(states):
            raise ValueError(f"evaluate returned {len(values)} values for {len(states)} states")
        for state, v in zip(states, values):
            v = min(1.0, max(0.0, v))
            d = node.depth + 1
            child = MCTSNode(id=f"{node.id}.{len(node.children)}", state=state, depth=d,
                             parent=node, prior=v, visits=1, total=v,
                             terminal=d >= depth or terminal(state))
            node.children.append(child)
        await score_terminals([ch for ch in node.children if ch.terminal])
        return node.children

    async def score_terminals(nodes: list[MCTSNode]) -> None:
        # A complete state is scored as it is made: by the verifier when there is one (its
        # value becomes the reward, as LATS takes the environment's), and one judged poor is
        # reflected on once, so the lesson reaches the very next expansions.
        if reward is not None and nodes:
            rewards = await asyncio.gather(*(reward(x, n.state) for n in nodes))
            for n, r in zip(nodes, rewards):
                n.reward = min(1.0, max(0.0, float(r)))
                n.total = n.reward * n.visits
        await reflect_on([n for n in nodes
                          if (n.reward if n.reward is not None else (n.prior or 0.0)) < 0.5])

    async def reflect_on(poor: list[MCTSNode]) -> None:
        if reflect is None:
            return
        poor = [n for n in poor if n.id not in reflected]
        reflected.update(n.id for n in poor)
        for lesson in await asyncio.gather(*(reflect(x, n.state) for n in poor)):
            if lesson and lesson not in result.reflections:
                result.reflections.append(lesson)

    def best_child(node: MCTSNode) -> MCTSNode:
        return max(node.children, key=lambda ch: (ch.value, -node.children.index(ch)))

    async def simulate(index: int) -> None:
        path = select()
        while path[-1].id in expanding:
            # Another simulation is expanding this leaf: wait for its children, then choose
            # again, rather than spend a simulation on a node with no value yet.
            await expanding[path[-1].id].wait()
            path = select()
        for n in path:
            n.pending += 1
        leaf = path[-1]
        expanded = 0
        try:
            end = leaf
            if not leaf.terminal and not leaf.expanded:
                children = await expand(leaf, index)
                expanded += 1
                if children:
                    end = best_child(leaf)
                    steps = 0
                    while (not end.terminal and (rollout_depth is None or steps < rollout_depth)
                           and not end.expanded):
                        more = await expand(end, index)
                        expanded += 1
                        if not more:
                            break
                        end = best_child(end)
                        steps += 1
            if end.terminal and end.reward is not None:
                score = end.reward
            elif end.expanded and not end.children and not end.terminal:
                score = 0.0  # a dead end: nothing could follow it
            else:
                score = end.value
        finally:
            for n in path:
                n.pending -= 1
        # Back-propagation: every node from the root to the end state, including the rollout.
        node: MCTSNode | None = end
        while node is not None:
            node.visits += 1
            node.total += score
            node = node.parent
        result.simulations += 1
        solved = bool(end.terminal and end.reward is not None and end.reward >= 1.0)
        if on_simulation is not None:
            out = on_simulation(Simulation(index, leaf, end, score, expanded, solved))
            if asyncio.iscoroutine(out):
                await out
        if solved and stop_on_solution:
            finish("solved")

    async def worker() -> None:
        nonlocal started
        while not done.is_set():
            if started >= simulations:
                return
            if proceed is not None and not proceed(started + 1, root_node):
                finish("limit")
                return
            if root_node.expanded and _exhausted(root_node, expanding):
                finish("exhausted")
                return
            started += 1
            try:
                await simulate(started)
            except stop_on as exc:
                finish(type(exc).__name__, exc)
                return

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def _exhausted(node: MCTSNode, expanding: dict[str, Any]) -> bool:
    """True when no node below ``node`` can still be expanded (the whole tree is known)."""
    if node.terminal:
        return True
    if not node.expanded or node.id in expanding:
        return False
    return all(_exhausted(ch, expanding) for ch in node.children)


def _accepts_three(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3
