"""The search core against hand-computed cases: generation, evaluation, selection, limits."""

import asyncio
import contextlib
import random
from collections import Counter

import pytest
from sigil_reasoning_tot.search import (
    VALUE_SCALE,
    bfs,
    greedy,
    judgements_value,
    sampler,
    value_evaluator,
)


# A toy problem whose tree is easy to compute by hand: a state is a string of digits, each
# thought appends one of 1, 2, 3, and a state is worth the sum of its digits.
async def digits_generate(x, state):
    return [state + d for d in "123"]


async def digit_sum(x, state):
    return float(sum(int(c) for c in state))


# ------------------------------------------------------------------ selection


def test_greedy_keeps_top_b_best_first():
    assert greedy([0.001, 20.0, 1.0], 2) == [1, 2]
    assert greedy([0.001, 20.0, 1.0], 5) == [1, 2, 0]


def test_greedy_breaks_ties_by_generation_order():
    assert greedy([1.0, 5.0, 3.0, 5.0, 5.0], 2) == [1, 3]
    assert greedy([2.0, 2.0, 2.0], 3) == [0, 1, 2]


def test_greedy_with_zero_breadth_keeps_nothing():
    assert greedy([1.0, 2.0], 0) == []


def test_sample_never_draws_a_zero_value_when_others_are_positive():
    select = sampler(random.Random(7))
    assert set(select([0.0, 4.0, 0.0], 50)) == {1}


def test_sample_draws_in_proportion_to_value():
    select = sampler(random.Random(1))
    counts = Counter(select([1.0, 3.0], 8000))
    # Expected 2000 / 6000; a 4-sigma band (sigma ~ 39) with a fixed seed.
    assert abs(counts[0] - 2000) < 160
    assert counts[0] + counts[1] == 8000


def test_sample_with_all_zero_values_is_uniform_not_a_crash():
    counts = Counter(sampler(random.Random(3))([0.0, 0.0, 0.0], 3000))
    assert set(counts) == {0, 1, 2}
    assert all(800 < c < 1200 for c in counts.values())


# ------------------------------------------------------------------ evaluation


def test_judgements_value_uses_the_reference_scale():
    assert VALUE_SCALE == {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
    assert judgements_value(["sure", "likely", "impossible"]) == pytest.approx(21.001)
    assert judgements_value(["Sure", " likely\n", "nonsense", None]) == pytest.approx(21.0)


async def test_value_evaluator_values_duplicates_once_and_gives_them_zero():
    calls = []

    async def value(x, s):
        calls.append(s)
        return float(len(s))

    evaluate = value_evaluator(value)
    assert await evaluate("x", ["ab", "abc", "ab", "a"]) == [2.0, 3.0, 0.0, 1.0]
    assert sorted(calls) == ["a", "ab", "abc"]


async def test_value_evaluator_cache_avoids_revaluing_across_levels():
    calls = []

    async def value(x, s):
        calls.append(s)
        return 1.0

    cache = {}
    evaluate = value_evaluator(value, cache=cache)
    await evaluate("x", ["a", "b"])
    assert await evaluate("x", ["b", "c"]) == [1.0, 1.0]
    assert calls == ["a", "b", "c"]


# ------------------------------------------------------------------ the search


async def test_bfs_hand_computed_tree():
    result = await bfs("", generate=digits_generate, evaluate=value_evaluator(digit_sum),
                       select=greedy, depth=2, breadth=2)
    # Level 1: "1","2","3" -> keep "3","2". Level 2: "31","32","33","21","22","23" worth
    # 4,5,6,3,4,5 -> keep "33" and, of the tied "32" and "23", the earlier "32".
    assert [lv.values for lv in result.levels] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 3.0, 4.0, 5.0]]
    assert [n.state for n in result.frontier] == ["33", "32"]
    assert result.best.state == "33"
    assert result.best.id == "0.2.2"
    assert [n.thought for n in result.best.path] == ["3", "3"]
    assert result.expansions == 3
    assert result.stopped is None
    assert len(result.nodes) == 1 + 3 + 6
    assert result.levels[0].selected == ["0.2", "0.1"]


async def test_bfs_breadth_one_is_greedy_hill_climbing():
    result = await bfs("", generate=digits_generate, evaluate=value_evaluator(digit_sum),
                       depth=3, breadth=1)
    assert result.best.state == "333"
    assert result.expansions == 3


async def test_bfs_vote_style_evaluator_sees_the_whole_level():
    seen = []

    async def vote(x, states):
        seen.append(list(states))
        # One vote, for the last candidate.
        return [0.0] * (len(states) - 1) + [1.0]

    result = await bfs("", generate=digits_generate, evaluate=vote, depth=2, breadth=1)
    assert seen == [["1", "2", "3"], ["31", "32", "33"]]
    assert result.best.state == "33"


async def test_bfs_expands_the_frontier_concurrently():
    started = 0
    all_started = asyncio.Event()

    async def generate(x, state):
        nonlocal started
        if state:  # the three level-2 expansions
            started += 1
            if started == 3:
                all_started.set()
            # Times out if the frontier states were expanded one after another.
            await asyncio.wait_for(all_started.wait(), timeout=2)
        return [state + d for d in "123"]

    result = await bfs("", generate=generate, evaluate=value_evaluator(digit_sum),
                       depth=2, breadth=3)
    assert result.expansions == 4


async def test_bfs_expand_limit_narrows_then_stops():
    seen = []

    def limit(level, frontier):
        seen.append((level, [n.state for n in frontier]))
        return {1: 1, 2: 1}.get(level, 0)

    result = await bfs("", generate=digits_generate, evaluate=value_evaluator(digit_sum),
                       depth=3, breadth=2, expand_limit=limit)
    # Level 2 expands only the best of "3","2"; level 3 is refused.
    assert seen == [(1, [""]), (2, ["3", "2"]), (3, ["33", "32"])]
    assert result.expansions == 2
    assert result.stopped == "limit"
    assert result.best.state == "33"


class OutOfTokens(Exception):
    pass


async def test_bfs_stop_on_returns_best_so_far():
    async def evaluate(x, states):
        if len(states[0]) == 2:
            raise OutOfTokens("no more")
        return [float(s) for s in states]

    result = await bfs("", generate=digits_generate, evaluate=evaluate, depth=3, breadth=2,
                       stop_on=(OutOfTokens,))
    assert result.stopped == "OutOfTokens"
    assert isinstance(result.error, OutOfTokens)
    assert result.best.state == "3"


async def test_bfs_other_errors_propagate():
    async def evaluate(x, states):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await bfs("", generate=digits_generate, evaluate=evaluate, depth=1, breadth=1,
                  stop_on=(OutOfTokens,))


async def test_bfs_on_expand_reports_branches_and_wraps_generation():
    log = []

    @contextlib.asynccontextmanager
    async def scope(node, i, n):
        log.append(("enter", node.id, i, n))
        yield
        log.append(("exit", node.id))

    result = await bfs("", generate=digits_generate, evaluate=value_evaluator(digit_sum),
                       depth=2, breadth=2, on_expand=lambda node, i, n, repeat: scope(node, i, n))
    assert ("enter", "0", 1, 1) in log
    assert ("enter", "0.2", 1, 2) in log and ("enter", "0.1", 2, 2) in log
    assert log.count(("exit", "0.2")) == 1
    assert result.expansions == 3


async def test_bfs_rejects_bad_arguments_and_mismatched_values():
    with pytest.raises(ValueError):
        await bfs("", generate=digits_generate, evaluate=value_evaluator(digit_sum),
                  depth=1, breadth=0)

    async def short(x, states):
        return [1.0]

    with pytest.raises(ValueError, match="3 states"):
        await bfs("", generate=digits_generate, evaluate=short, depth=1, breadth=1)


async def test_bfs_with_no_candidates_stops_and_keeps_the_root():
    async def nothing(x, state):
        return []

    result = await bfs("", generate=nothing, evaluate=value_evaluator(digit_sum),
                       depth=2, breadth=2)
    assert result.stopped == "no_candidates"
    assert result.best is result.root
