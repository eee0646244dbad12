"""The breadth-first Tree of Thoughts search (Yao et al., 2023), independent of Sigil.

This is the search of the reference implementation (princeton-nlp/tree-of-thought-llm,
``methods/bfs.py``) written over three async callables, so any model, or plain code, can drive
it::

    result = await bfs(
        x,                      # the problem input
        generate=generate,      # async (x, state) -> list of new states (each extends state)
        evaluate=evaluate,      # async (x, states) -> one value per state (higher is better)
        select=greedy,          # (values, n) -> indices of the states to keep
        depth=4, breadth=5,
    )
    result.best.state           # the best final state, result.frontier the kept ones

A *state* is a string: the reference's partial output ``y``, the thoughts so far, one per line.
At every level the search generates the children of each frontier state, evaluates all children
of the level together (so a ``vote`` evaluator can compare them), keeps ``breadth`` of them with
``select`` and goes one level deeper. It does not stop early: like the reference, it always runs
``depth`` levels unless ``expand_limit`` or an exception listed in ``stop_on`` ends it, in which
case it returns the best path found so far (``result.stopped``).

The generation of the frontier's children, and the evaluation of the level when the evaluator
is built with :func:`value_evaluator`, run concurrently.

Values follow the reference's scale when the evaluator is a ``value`` evaluator: per sample
``sure`` = 20, ``likely`` = 1, ``impossible`` = 0.001 (:data:`VALUE_SCALE`), summed over
``n_evaluate_sample`` samples; a ``vote`` evaluator returns vote counts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

#: The reference's value for one judgement of a state (``value_outputs_unwrap``).
VALUE_SCALE: dict[str, float] = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}

Generate = Callable[[str, str], Awaitable[Sequence[str]]]
Evaluate = Callable[[str, Sequence[str]], Awaitable[Sequence[float]]]
Select = Callable[[Sequence[float], int], Sequence[int]]
#: Called before a level with (level, frontier); returns how many frontier nodes to expand.
ExpandLimit = Callable[[int, Sequence["Node"]], int]
#: Called as a frontier node is expanded: (node, index from 1, number expanded this level,
#: repeat), where ``repeat`` counts earlier expansions of the same node (a ``sample`` selection
#: draws with replacement, so a node can be expanded more than once). May return (or resolve
#: to) an async context manager, which the node's generation then runs inside.
OnExpand = Callable[["Node", int, int, int], Any]


@attrs.define(eq=False)
class TreePath:
    """A tree node's place in the tree: its id (the path of child indices, "0" is the root,
    "0.2.1"...), its state, depth, parent and children; from them its thought and its path.

    The base of the BFS :class:`Node` and the MCTS node.
    """

    id: str
    state: str
    depth: int
    parent: Any = attrs.field(default=None, repr=False)
    children: list[Any] = attrs.Factory(list)

    @property
    def thought(self) -> str:
        """What this node added to its parent's state."""
        if self.parent is None:
            return self.state
        base = self.parent.state
        return self.state.removeprefix(base)

    @property
    def path(self) -> list[Any]:
        """The nodes from the first thought down to this one (the root excluded)."""
        nodes: list[Any] = []
        node: Any = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def to_dict(self) -> dict[str, Any]:
        """Id, parent id, depth and thought; subclasses add their figures."""
        return {
            "id": self.id,
            "parent_id": self.parent.id if self.parent is not None else None,
            "depth": self.depth,
            "thought": self.thought,
        }


@attrs.define(eq=False)
class Node(TreePath):
    """One state of the BFS tree (``parent`` and ``children`` are Nodes)."""

    value: float | None = None
    selected: bool = False
    #: Which expansion of the parent made this node: 0 for the first, k for the parent's
    #: k-th repeated expansion (see :data:`OnExpand`). Child ids stay unique across repeats.
    origin: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "value": self.value, "selected": self.selected}


@attrs.define
class LevelInfo:
    """What happened at one level, as the reference's ``infos`` entries."""

    level: int
    expanded: list[str]
    candidates: list[str]
    values: list[float]
    selected: list[str]


@attrs.define
class SearchResult:
    """The outcome of :func:`bfs`."""

    root: Node
    #: The states kept at the last completed level, best first for a greedy selection.
    frontier: list[Node]
    levels: list[LevelInfo]
    #: Nodes whose children were generated (the "branches" explored).
    expansions: int
    #: Why the search ended before ``depth`` levels: None, "limit" or the exception's type name.
    stopped: str | None = None
    error: BaseException | None = None

    def first_verified(self, verify: Callable[[Node], bool]) -> Node | None:
        """The first frontier node (best first for a greedy selection) that ``verify`` accepts.

        The "any verified" final selection, for tasks that have a verifier (Game of 24's exact
        check): the reference counts a puzzle solved when any of the final ``b`` states is
        correct (its ``cnt_any``), while :attr:`best` answers from the single best state.
        """
        return next((n for n in self.frontier if verify(n)), None)

    @property
    def best(self) -> Node:
        """The highest-valued node of the frontier (the first one on ties); the root if none."""
        if not self.frontier:
            return self.root
        return max(self.frontier, key=lambda n: (n.value if n.value is not None else 0.0,
                                                 -self.frontier.index(n)))

    @property
    def nodes(self) -> list[Node]:
        """Every node of the tree, breadth first."""
        return breadth_first(self.root)


def breadth_first(root: Any) -> list[Any]:
    """Every node of the tree under ``root`` (itself included), breadth first: the BFS and
    the MCTS trees alike (nodes with ``children``)."""
    out, queue = [], [root]
    while queue:
        node = queue.pop(0)
        out.append(node)
        queue.extend(node.children)
    return out


# --------------------------------------------------------------------------- selection


def greedy(values: Sequence[float], n: int) -> list[int]:
    """The indices of the ``n`` highest values, best first; ties keep the earlier index first.

    The reference sorts the ids by value with ``reverse=True``; Python's sort is stable, so
    equal values keep their generation order, which is what makes this deterministic.
    """
    return sorted(range(len(values)), key=lambda i: values[i], reverse=True)[:max(0, n)]


def sampler(rng: random.Random | None = None) -> Select:
    """A ``sample`` selection: draw ``n`` indices with replacement, with probability value/sum.

    As the reference (``np.random.choice(ids, size=n, p=values/sum(values))``). When every
    value is zero the reference divides by zero; here the draw is uniform instead.
    """
    rng = rng or random.Random()

    def sample(values: Sequence[float], n: int) -> list[int]:
        if not values or n <= 0:
            return []
        weights = [max(0.0, float(v)) for v in values]
        if sum(weights) <= 0:
            weights = [1.0] * len(values)
        return rng.choices(range(len(values)), weights=weights, k=n)

    return sample


# --------------------------------------------------------------------------- evaluation


def value_evaluator(
    value: Callable[[str, str], Awaitable[float]], *, cache: dict[str, float] | None = None
) -> Evaluate:
    """Build a level evaluator from a per-state ``value(x, state)`` coroutine function.

    As the reference's ``get_values``: a state that appears twice in one level is valued once
    and its duplicates get 0 (so greedy selection does not keep the same state twice); values are
    cached across levels by state when ``cache`` is given. The states are valued concurrently.
    """

    async def evaluate(x: str, states: Sequence[str]) -> list[float]:
        first: dict[str, int] = {}
        for i, s in enumerate(states):
            first.setdefault(s, i)
        unique = [s for s in first if cache is None or s not in cache]
        computed = await asyncio.gather(*(value(x, s) for s in unique))
        known = dict(zip(unique, computed))
        if cache is not None:
            cache.update(known)
            known = {s: cache[s] for s in first}
        return [float(known[s]) if first[s] == i else 0.0 for i, s in enumerate(states)]

    return evaluate


def judgements_value(judgements: Sequence[str | None]) -> float:
    """The reference's value of a state from its sampled judgements.

    Computed as the reference does (``value_outputs_unwrap``): from the *count* of each
    judgement, in the fixed order impossible, likely, sure. Summing the judgements' values in
    arrival order gives 1.002 or 1.0019999999999998 for the same set depending on the order in
    which concurrent answers came back, and so broke greedy ties differently from run to run.
    """
    names = [(j or "").strip().lower() for j in judgements]
    return sum(value * names.count(name)
               for name, value in sorted(VALUE_SCALE.items(), key=lambda kv: kv[1]))


# --------------------------------------------------------------------------- the search


async def bfs(
    x: str,
    *,
    generate: Generate,
    evaluate: Evaluate,
    select: Select = greedy,
    depth: int,
    breadth: int,
    root: str = "",
    expand_limit: ExpandLimit | None = None,
    on_expand: OnExpand | None = None,
    stop_on: tuple[type[BaseException], ...] = (),
) -> SearchResult:
    """Run the breadth-first Tree of Thoughts search and return the tree and the final frontier.

    :param x: the problem input, handed to ``generate`` and ``evaluate`` unchanged.
    :param generate: ``async (x, state) -> [new_state, ...]``; each new state normally extends
        ``state`` (the reference appends one thought line). Called for every frontier state of a
        level, concurrently.
    :param evaluate: ``async (x, states) -> [value, ...]`` for all candidates of a level.
    :param select: ``(values, n) -> [index, ...]``; :func:`greedy` or :func:`sampler`.
    :param depth: the number of levels (thought steps).
    :param breadth: ``b``, how many states are kept per level (``n_select_sample``).
    :param root: the initial state (the reference starts from ``""``).
    :param expand_limit: ``(level, frontier) -> k``: expand only the first ``k`` frontier nodes
        (they are best first). ``0`` ends the search with ``stopped="limit"``. Used for budgets.
    :param on_expand: called (awaited if it returns a coroutine) as each node is expanded, with
        ``(node, i, n, repeat)``; if it returns an async context manager, the node's
        ``generate`` call runs inside it. A node a ``sample`` selection drew k times is expanded
        k times (as the reference does); its repeats get ``repeat`` 1, 2, ... and their
        children continue the node's child numbering, so every node id is unique.
    :param stop_on: exception types that end the search with the best path so far instead of
        propagating (e.g. a budget error); the exception is kept in ``result.error``.
    """
    if depth < 0 or breadth < 1:
        raise ValueError("depth must be >= 0 and breadth >= 1")
    root_node = Node(id="0", state=root, depth=0, selected=True)
    frontier: list[Node] = [root_node]
    levels: list[LevelInfo] = []
    expansions = 0
    stopped: str | None = None
    error: BaseException | None = None

    for level in range(1, depth + 1):
        to_expand = frontier
        if expand_limit is not None:
            k = max(0, min(len(frontier), int(expand_limit(level, frontier))))
            if k == 0:
                stopped = "limit"
                break
            to_expand = frontier[:k]
        repeats: list[int] = []
        seen: dict[int, int] = {}
        for node in to_expand:
            repeats.append(seen.get(id(node), 0))
            seen[id(node)] = repeats[-1] + 1
        try:
            children_per_node = await asyncio.gather(*(
                _expand(x, node, i, len(to_expand), repeat, generate, on_expand)
                for i, (node, repeat) in enumerate(zip(to_expand, repeats), 1)
            ))
        except stop_on as exc:
            stopped, error = type(exc).__name__, exc
            break
        expansions += len(to_expand)
        candidates: list[Node] = []
        for node, repeat, states in zip(to_expand, repeats, children_per_node):
            for state in states:
                child = Node(id=f"{node.id}.{len(node.children)}", state=state, depth=level,
                             parent=node, origin=repeat)
                node.children.append(child)
                candidates.append(child)
        if not candidates:
            stopped = "no_candidates"
            break
        try:
            values = [float(v) for v in await evaluate(x, [c.state for c in candidates])]
        except stop_on as exc:
            stopped, error = type(exc).__name__, exc
            break
        if len(values) != len(candidates):
            raise ValueError(
                f"evaluate returned {len(values)} values for {len(candidates)} states")
        for child, v in zip(candidates, values):
            child.value = v
        chosen = [candidates[i] for i in select(values, breadth)]
        for node in chosen:
            node.selected = True
        levels.append(LevelInfo(
            level=level,
            expanded=[n.id for n in to_expand],
            candidates=[c.id for c in candidates],
            values=values,
            selected=[n.id for n in chosen],
        ))
        frontier = chosen

    return SearchResult(root=root_node, frontier=frontier if levels else [],
                        levels=levels, expansions=expansions, stopped=stopped, error=error)


async def _expand(x: str, node: Node, i: int, n: int, repeat: int, generate: Generate,
                  on_expand: OnExpand | None) -> list[str]:
    scope = None
    if on_expand is not None:
        scope = on_expand(node, i, n, repeat)
        if asyncio.iscoroutine(scope):
            scope = await scope
    if scope is not None and hasattr(scope, "__aenter__"):
        # The caller wants the generation to run inside its context (e.g. a child operation
        # that the generation's LLM calls are booked to).
        async with scope:
            return list(await generate(x, node.state))
    return list(await generate(x, node.state))
