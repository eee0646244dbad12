"""The MCTS search alone (no Sigil): selection, expansion, back-propagation, determinism."""

from __future__ import annotations

import asyncio
import math

import pytest
from sigil_reasoning_tot import mcts
from sigil_reasoning_tot.game24 import (
    Game24Task,
    ScriptedModel,
    check_answer,
    mcts_solve,
)
from sigil_reasoning_tot.mcts_search import MCTSNode, uct

# A toy problem: states are strings of letters; "C" is good, "B" fair, "A" bad. A complete
# solution has 3 letters; the verifier accepts only "CCC".
VALUES = {"A": 0.0, "B": 0.5, "C": 0.9}


async def letters(x, state):
    return [state + ch for ch in "ABC"]


async def value_of_last(x, states):
    return [VALUES[s[-1]] for s in states]


async def verify(x, state):
    return 1.0 if state == "CCC" else 0.0


def test_uct_prefers_unvisited_then_balances_value_and_exploration():
    parent = MCTSNode(id="0", state="", depth=0, visits=10)
    fresh = MCTSNode(id="0.0", state="a", depth=1, parent=parent)
    good = MCTSNode(id="0.1", state="b", depth=1, parent=parent, visits=5, total=4.0)
    rare = MCTSNode(id="0.2", state="c", depth=1, parent=parent, visits=1, total=0.5)
    assert uct(fresh, 10, 1.0) == math.inf
    assert uct(good, 10, 0.0) > uct(rare, 10, 0.0)       # exploitation alone
    assert uct(rare, 10, 2.0) > uct(good, 10, 2.0)       # exploration wins with a large c
    rare.pending = 3                                     # a virtual loss lowers it
    assert uct(rare, 10, 2.0) < uct(good, 10, 2.0)


async def test_hand_computed_search_follows_the_values():
    result = await mcts("x", generate=letters, evaluate=value_of_last, simulations=3, depth=3,
                        c=0.0, seed=0)
    # c=0 is greedy: root -> A, B, C (C best) -> CA, CB, CC -> CCC, terminal.
    assert result.simulations == 3 and result.expansions == 3
    assert [n.state for n in result.best.path] == ["C", "CC", "CCC"]
    assert result.best.terminal
    root = result.root
    assert root.visits == 3
    c = root.children[2]
    assert c.visits == 1 + 3  # its evaluation, then three simulations through it
    assert sum(ch.visits for ch in root.children) == 3 + 3


async def test_verifier_stops_at_the_first_solution_and_reflection_feeds_generation():
    seen_reflections = []

    async def gen(x, state, reflections):
        seen_reflections.append(list(reflections))
        return [state + ch for ch in "ABC"]

    async def misleading(x, states):  # B looks best, but only CCC verifies
        return [0.9 if s[-1] == "B" else 0.5 if s[-1] == "C" else 0.0 for s in states]

    lessons = []

    async def reflect(x, state):
        lessons.append(state)
        return f"{state} failed"

    result = await mcts("x", generate=gen, evaluate=misleading, reward=verify, reflect=reflect,
                        simulations=200, depth=3, rollout_depth=None, c=1.0, seed=1)
    assert result.stopped == "solved"
    assert result.best.state == "CCC" and result.best.reward == 1.0
    assert result.first_verified(lambda n: n.state == "CCC") is result.best
    # The rollout followed the values to BB, whose complete children all failed first.
    assert lessons[:3] == ["BBA", "BBB", "BBC"]
    assert len(lessons) == len(set(lessons))               # once per failed node
    assert any("BBB failed" in r for r in seen_reflections[-1])


async def test_same_seed_same_tree_and_another_seed_may_differ():
    async def flat(x, states):
        return [0.5 for _ in states]  # every tie is broken by the seeded generator

    async def run(seed):
        r = await mcts("x", generate=letters, evaluate=flat, simulations=12, depth=3, seed=seed)
        return [(n.id, n.state, n.visits) for n in r.nodes]

    assert await run(7) == await run(7)
    trees = {tuple(await run(s)) for s in range(6)}
    assert len(trees) > 1


async def test_concurrent_simulations_spread_over_the_tree_and_stay_consistent():
    in_flight, peak = 0, 0

    async def slow_letters(x, state):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return [state + ch for ch in "ABC"]

    result = await mcts("x", generate=slow_letters, evaluate=value_of_last, simulations=9,
                        depth=3, concurrency=3, seed=0)
    assert peak >= 2  # simulations really overlapped
    assert result.simulations == 9
    ids = [n.id for n in result.nodes]
    assert len(ids) == len(set(ids))
    for node in result.nodes:  # visits add up: each child's visits are counted at its parent
        if node.children and node.parent is not None:
            assert node.visits >= sum(ch.visits for ch in node.children) - len(node.children) + 1
        assert node.pending == 0


async def test_proceed_limits_simulations_and_stop_on_keeps_the_tree():
    result = await mcts("x", generate=letters, evaluate=value_of_last, simulations=50, depth=3,
                        proceed=lambda i, root: i <= 2)
    assert result.simulations == 2 and result.stopped == "limit"

    class Broke(Exception):
        pass

    calls = 0

    async def failing(x, state):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Broke()
        return [state + ch for ch in "ABC"]

    result = await mcts("x", generate=failing, evaluate=value_of_last, simulations=50, depth=3,
                        stop_on=(Broke,))
    assert result.stopped == "Broke" and isinstance(result.error, Broke)
    assert result.best.state  # the best path found before the error
    with pytest.raises(Broke):
        calls = 0
        await mcts("x", generate=failing, evaluate=value_of_last, simulations=50, depth=3)


async def test_a_small_tree_is_exhausted_not_revisited_forever():
    async def two(x, state):
        return [state + ch for ch in "AB"]

    result = await mcts("x", generate=two, evaluate=value_of_last, simulations=1000, depth=2)
    assert result.stopped == "exhausted"
    assert result.expansions == 3  # the root and its two children; grandchildren are terminal


async def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        await mcts("x", generate=letters, evaluate=value_of_last, simulations=1, depth=0)

    async def short(x, states):
        return [0.5]

    with pytest.raises(ValueError, match="values for 3 states"):
        await mcts("x", generate=letters, evaluate=short, simulations=1, depth=3)


@pytest.mark.parametrize("puzzle", ["4 5 6 10", "1 2 4 7", "3 3 8 8"])
async def test_game24_mcts_with_exact_judgements_solves_and_verifies(puzzle):
    model = ScriptedModel(evaluator="exact", seed=0)
    result = await mcts_solve(Game24Task([puzzle]), puzzle, model, n_simulations=30)
    assert result.stopped == "solved"
    assert check_answer(puzzle, result.best.state.strip().split("\n")[-1])


async def test_game24_mcts_reflects_on_failed_leaves_and_passes_the_lessons_on():
    prompts = []
    model = ScriptedModel(evaluator="heuristic", proposals=4, seed=3)

    async def recording(prompt, *, n, purpose, stop=None):
        prompts.append((purpose, prompt))
        return await model(prompt, n=n, purpose=purpose, stop=stop)

    result = await mcts_solve(Game24Task(["1 1 1 1"]), "1 1 1 1", recording, n_simulations=6,
                              reflection=True)
    assert result.stopped != "solved"                      # 1 1 1 1 cannot make 24
    reflects = [p for purpose, p in prompts if purpose == "mcts_reflect"]
    assert reflects and result.reflections
    later = [p for purpose, p in prompts if purpose == "tot_propose"
             and p.startswith("Lessons from earlier attempts")]
    assert later and result.reflections[0] in later[-1]
