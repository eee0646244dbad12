"""Tree of Thoughts behaves as the reference implementation (princeton-nlp/tree-of-thought-llm).

The replay tests feed the reference's own recorded GPT-4 run (propose, value x3, greedy, b=5) on
Game of 24 through the public :func:`bfs` and compare every level's selection with the one the
reference recorded.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from sigil_reasoning_tot import (
    VALUE_SCALE,
    bfs,
    greedy,
    judgements_value,
    sampler,
    value_evaluator,
)
from sigil_reasoning_tot.game24 import Game24Task, check_answer

RECORDED = json.loads((Path(__file__).parent / "data" / "reference_gpt4_game24_900.json")
                      .read_text(encoding="utf-8"))


def reference_value(judgements: list[str]) -> float:
    # The reference's value_outputs_unwrap, for the record: counts in its value_map's order.
    value_map = {"impossible": 0.001, "likely": 1, "sure": 20}
    return sum(value * judgements.count(name) for name, value in value_map.items())


def judgements_for(value: float) -> list[str]:
    """Three sampled judgements the reference turned into ``value`` (unparsed ones as '?')."""
    for s, lk, im in itertools.product(range(4), repeat=3):
        if s + lk + im <= 3:
            js = ["sure"] * s + ["likely"] * lk + ["impossible"] * im
            if reference_value(js) == value:
                return js + ["?"] * (3 - len(js))
    raise AssertionError(f"no judgements give {value}")


@pytest.mark.parametrize("judgements", [
    ["likely", "impossible", "impossible"],
    ["sure", "likely", "impossible"],
    ["likely", "likely", "impossible"],
    ["impossible", "impossible", "impossible"],
])
def test_equal_judgement_sets_value_the_same_in_any_arrival_order(judgements):
    values = {judgements_value(list(p)) for p in itertools.permutations(judgements)}
    assert values == {reference_value(judgements)}


def test_value_scale_is_the_references():
    assert VALUE_SCALE == {"sure": 20.0, "likely": 1.0, "impossible": 0.001}


def _replay_callables(rng: random.Random):
    """generate/value that answer from the recording; judgements come back in random order."""
    children: dict[str, list[str]] = {}
    values: dict[str, float] = {}
    for step in RECORDED["steps"]:
        for y, v in zip(step["new_ys"], step["values"]):
            parent = y[: y.rstrip("\n").rfind("\n") + 1]
            children.setdefault(parent, []).append(y)
            values.setdefault(y, v)

    async def generate(x: str, state: str) -> list[str]:
        return children.get(state, [])

    async def value(x: str, state: str) -> float:
        js = judgements_for(values[state])
        rng.shuffle(js)  # concurrent samples arrive in any order
        return judgements_value(js)

    return generate, value


@pytest.mark.parametrize("seed", range(12))
async def test_replay_of_the_reference_gpt4_run_selects_what_it_selected(seed):
    generate, value = _replay_callables(random.Random(seed))
    result = await bfs(RECORDED["x"], generate=generate, evaluate=value_evaluator(value),
                       select=greedy, depth=len(RECORDED["steps"]),
                       breadth=RECORDED["n_select_sample"])
    nodes = {n.id: n for n in result.nodes}
    assert len(result.levels) == len(RECORDED["steps"])
    for level, step in zip(result.levels, RECORDED["steps"]):
        assert [nodes[i].state for i in level.candidates] == step["new_ys"]
        assert level.values == [float(v) for v in step["values"]]
        assert [nodes[i].state for i in level.selected] == step["select_new_ys"]
    # Both answers in the final beam are correct; "best" answers from the first.
    task = Game24Task([RECORDED["x"]])
    assert task.test_output(0, result.best.state)
    verified = result.first_verified(lambda n: check_answer(RECORDED["x"], n.state))
    assert verified is result.best


async def test_any_verified_finds_a_correct_state_that_best_misses():
    # A beam whose best-valued state is wrong but whose second is right: the reference's
    # cnt_any counts it, "best" does not.
    async def generate(x, state):
        return [] if state else ["wrong\n", "right\n"]

    async def evaluate(x, states):
        return [2.0, 1.0]

    result = await bfs("x", generate=generate, evaluate=evaluate, depth=1, breadth=2)
    assert result.best.state == "wrong\n"
    assert result.first_verified(lambda n: n.state == "right\n").state == "right\n"
    assert result.first_verified(lambda n: False) is None


async def test_sampled_selection_gives_every_expansion_unique_ids():
    # With replacement the same node is drawn several times; each draw is its own expansion.
    async def generate(x, state):
        return [state + f"{i}\n" for i in range(2)]

    async def evaluate(x, states):
        return [1.0 if s.endswith("0\n") else 0.0 for s in states]

    seen: list[tuple[str, int]] = []

    def on_expand(node, i, n, repeat):
        seen.append((node.id, repeat))

    result = await bfs("x", generate=generate, evaluate=evaluate, select=sampler(random.Random(1)),
                       depth=3, breadth=3, on_expand=on_expand)
    ids = [n.id for n in result.nodes]
    assert len(ids) == len(set(ids))
    assert len(seen) == len(set(seen)) == result.expansions
    assert any(repeat > 0 for _, repeat in seen)  # a node drawn twice was expanded twice
    for node in result.nodes[1:]:
        assert node.parent.children.count(node) == 1
        assert node.id.rsplit(".", 1)[0] == node.parent.id
