"""The Game of 24 task: exact checking, the prompts' own examples, and the offline search."""

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sigil_reasoning_tot import game24
from sigil_reasoning_tot.game24 import (
    Game24Task,
    ScriptedModel,
    can_reach_24,
    check_answer,
    current_numbers,
    evaluate_expression,
    expression_from_steps,
    naive_solve,
    next_steps,
    parse_step,
    tot_solve,
)


@pytest.fixture(scope="module")
def tot_puzzles():
    path = game24.default_data_path()
    if not path.exists():
        pytest.skip(f"Game of 24 data not found at {path} (set SIGIL_GAME24_CSV)")
    return game24.load_puzzles(path)


# ------------------------------------------------------------------ exact checking


@pytest.mark.parametrize("puzzle,output,ok", [
    ("4 9 10 13", "Answer: (13 - 9) * (10 - 4) = 24", True),
    ("4 9 10 13", "13 - 9 = 4 (left: 4 4 10)\nAnswer: 4 * (9 - (13 - 10)) = 24", True),
    ("3 3 8 8", "8 / (3 - 8 / 3) = 24", True),              # needs exact fractions
    ("4 9 10 13", "Answer: (13 - 9) * (10 - 4) + 1 = 25", False),  # an extra number
    ("4 9 10 13", "Answer: (13 - 4) * (10 - 9) = 24", False),      # wrong value
    ("1 2 3 4", "Answer: 1 * 2 * 3 * 4 * 1 = 24", False),
    ("1 2 3 4", "Answer: 2 * 3 * 4 = 24", False),                  # a number missing
    ("1 2 3 4", "Answer: __import__('os') = 24", False),
    ("1 2 3 4", "Answer: (1 + 2) ** 3 = 24", False),
    ("1 2 3 4", "", False),
    ("1 1 4 6", "Answer: 6 / (1 - 1) * 4 = 24", False),            # division by zero
])
def test_check_answer(puzzle, output, ok):
    assert check_answer(puzzle, output) is ok


def test_evaluate_expression_is_exact_and_reports_the_numbers_used():
    assert evaluate_expression("8 / (3 - 8 / 3)") == (Fraction(24), [8, 3, 8, 3])
    assert evaluate_expression("1 / 3 * 3") == (Fraction(1), [1, 3, 3])
    assert evaluate_expression("open('x')") is None
    assert evaluate_expression("2.5 * 4") is None


def test_solver_finds_exact_solutions_and_knows_impossible_ones():
    assert can_reach_24(["3", "3", "8", "8"])
    assert check_answer("3 3 8 8", game24.solve([3, 3, 8, 8]))
    assert not can_reach_24([1, 1, 1, 1])
    assert can_reach_24([Fraction(8, 3), 9]) is True  # 8/3 * 9
    assert can_reach_24([24])


# ------------------------------------------------------------------ parsing


def test_current_numbers_and_parse_step():
    y = "4 + 8 = 12 (left: 4 6 12)\n6 - 4 = 2 (left: 2 12)\n"
    assert current_numbers(y) == "2 12"
    assert current_numbers("4 4 6 8") == "4 4 6 8"
    assert parse_step("8 / 3 = 8/3 (left: 3 8 8/3)") == (
        8, "/", 3, Fraction(8, 3), [3, 8, Fraction(8, 3)])
    assert parse_step("Answer: 4 * 6 = 24") is None


def test_next_steps_from_two_numbers():
    steps = [line for line, _ in next_steps([Fraction(2), Fraction(6)])]
    assert steps == [
        "6 + 2 = 8 (left: 8)", "6 * 2 = 12 (left: 12)", "6 - 2 = 4 (left: 4)",
        "2 - 6 = -4 (left: -4)", "6 / 2 = 3 (left: 3)", "2 / 6 = 1/3 (left: 1/3)",
    ]


def test_expression_from_steps_rebuilds_the_equation():
    steps = ["13 - 10 = 3 (left: 3 4 9)", "9 - 3 = 6 (left: 4 6)", "4 * 6 = 24 (left: 24)"]
    expr = expression_from_steps("4 9 10 13", steps)
    assert check_answer("4 9 10 13", expr)
    # A step using a number that is not there does not make an equation.
    assert expression_from_steps("4 9 10 13", ["7 * 3 = 21 (left: 4 10 21)"]) is None


def test_value_outputs_unwrap_as_the_reference():
    task = Game24Task(puzzles=["4 9 10 13"])
    y3 = "a (left: 1)\nb (left: 2)\nc (left: 24)\n"
    assert task.value_outputs_unwrap("x", y3, ["...\nsure", "likely", "x\nimpossible"]) == \
        pytest.approx(21.001)
    # Four lines and no answer: worthless whatever the judges say.
    assert task.value_outputs_unwrap("x", y3 + "d (left: 24)\n", ["sure"] * 3) == 0


def test_prompt_examples_are_correct():
    # The few-shot examples teach the model; a wrong one would teach it wrong answers.
    for prompt in (game24.STANDARD_PROMPT, game24.COT_PROMPT):
        pairs = re.findall(r"Input: ([\d ]+)\n(?:Steps:\n(?:.*\n)*?)?(Answer: .*)", prompt)
        assert len(pairs) == 5
        for puzzle, answer in pairs:
            assert check_answer(puzzle, answer), (puzzle, answer)
    for line in game24.PROPOSE_PROMPT.split("Possible next steps:\n")[1].split("Input:")[0] \
            .strip().split("\n"):
        a, op, b, c, left = parse_step(line)
        assert game24.apply(a, op, b) == c
        assert sorted(left + [a, b]) == sorted([Fraction(n) for n in ["3", "5", "6", "9"]] + [c])
    judged = re.findall(r"Input: ([\d ]+)\nAnswer: (.*)\nJudge:\n(\w+)",
                        game24.VALUE_LAST_STEP_PROMPT)
    assert len(judged) == 6
    for puzzle, answer, verdict in judged:
        assert check_answer(puzzle, answer) is (verdict == "sure")


def test_propose_prompt_switches_to_the_answer_after_three_steps():
    task = Game24Task(puzzles=[])
    y = "13 - 10 = 3 (left: 3 4 9)\n9 - 3 = 6 (left: 4 6)\n4 * 6 = 24 (left: 24)\n"
    assert task.propose_prompt_wrap("4 9 10 13", "").endswith(
        "Input: 4 9 10 13\nPossible next steps:\n")
    assert task.propose_prompt_wrap("4 9 10 13", y).endswith("Steps:\n" + y)
    assert "Judge:" in task.value_prompt_wrap("4 9 10 13", y + "Answer: 4 * 6 = 24\n")
    assert task.value_prompt_wrap("4 9 10 13", y.split("\n")[0] + "\n").endswith("\n3 4 9\n")


# ------------------------------------------------------------------ the offline search


async def test_tot_b5_with_exact_evaluation_solves_every_solvable_puzzle(tot_puzzles):
    task = Game24Task(tot_puzzles)
    model = ScriptedModel(evaluator="exact")
    for idx in range(900, 1000, 9):  # a sample of 12 of the benchmark's puzzles
        x = task.get_input(idx)
        assert can_reach_24(x.split())
        result = await tot_solve(task, x, model, n_select_sample=5)
        answers = [n.state for n in result.frontier]
        assert any(task.test_output(idx, y) for y in answers), (x, answers)
        assert result.best.depth == 4
    assert model.calls > 0 and model.total_tokens > 0


async def test_tot_finds_nothing_for_an_unsolvable_puzzle():
    task = Game24Task(["1 1 1 1"])
    result = await tot_solve(task, "1 1 1 1", ScriptedModel(evaluator="exact"))
    assert not any(task.test_output(0, n.state) for n in result.frontier)


async def test_tot_with_vote_and_sample_methods_runs_the_same_search(tot_puzzles):
    task = Game24Task(tot_puzzles)
    model = ScriptedModel(evaluator="exact", seed=3)
    x = task.get_input(950)
    result = await tot_solve(task, x, model, method_generate="propose", method_evaluate="vote",
                             method_select="greedy", n_evaluate_sample=1, n_select_sample=3)
    assert len(result.levels) == 4
    sampled = await tot_solve(task, x, model, method_generate="sample", n_generate_sample=4,
                              n_select_sample=2)
    assert all(len(lv.candidates) <= 8 for lv in sampled.levels)


async def test_naive_io_and_cot_produce_checkable_equations(tot_puzzles):
    task = Game24Task(tot_puzzles)
    model = ScriptedModel(seed=5)
    outs = await naive_solve(task, task.get_input(900), model, prompt="cot", n_generate_sample=3)
    assert len(outs) == 3
    for out in outs:
        assert len(out.strip().split("\n")) == 4
        assert out.strip().split("\n")[-1].startswith("Answer:")
    io = await naive_solve(task, task.get_input(900), model, prompt="standard")
    assert io[0].startswith("Answer: ")
    # The random equation uses the puzzle's numbers, right or wrong.
    numbers = sorted(re.findall(r"\d+", io[0].split("=")[0]))
    assert numbers == sorted(task.get_input(900).split())


# ------------------------------------------------------------------ properties

puzzles_st = st.lists(st.integers(min_value=1, max_value=13), min_size=4, max_size=4)


@settings(max_examples=150, deadline=None)
@given(puzzles_st)
def test_every_solution_found_passes_the_exact_check(numbers):
    puzzle = " ".join(map(str, sorted(numbers)))
    expr = game24.solve(numbers)
    if expr is not None:
        assert check_answer(puzzle, f"Answer: {expr} = 24")


@settings(max_examples=150, deadline=None)
@given(puzzles_st)
def test_proposed_steps_are_consistent_arithmetic(numbers):
    start = [Fraction(n) for n in numbers]
    for line, left in next_steps(start):
        a, op, b, c, parsed_left = parse_step(line)
        assert game24.apply(a, op, b) == c
        assert parsed_left == left
        assert sorted(left + [a, b]) == sorted(start + [c])
        # A step keeps 24 reachable only if the numbers before it could reach it.
        if can_reach_24(left):
            assert can_reach_24(start)
