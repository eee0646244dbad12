"""The Game of 24, the reference's benchmark task for Tree of Thoughts.

Input ``x``: four numbers ("4 9 10 13"). Output ``y``: three steps, each combining two of the
numbers left, then the final equation::

    13 - 10 = 3 (left: 3 4 9)
    9 - 3 = 6 (left: 4 6)
    4 * 6 = 24 (left: 24)
    Answer: 4 * (9 - (13 - 10)) = 24

A ToT search over this task has depth 4 (three steps and the answer), as the reference's. The
answer is checked exactly (:func:`check_answer`): the expression must use each input number once
and no other, and evaluate to 24 in rational arithmetic. Expressions are parsed with ``ast``
into a whitelist of nodes, never evaluated with ``eval``.

Everything that talks to a model goes through one coroutine, ``complete(prompt, n=, purpose=,
stop=) -> list[str]`` (n sampled answers); :class:`ScriptedModel` is such a model in plain code,
an exact (or deliberately heuristic) arithmetic proposer and evaluator used offline.
"""

from __future__ import annotations

import ast
import asyncio
import csv
import itertools
import math
import os
import random
import re
from collections.abc import Awaitable, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sigil_core import estimate_tokens

from .search import (
    VALUE_SCALE,
    SearchResult,
    bfs,
    greedy,
    judgements_value,
    sampler,
    value_evaluator,
)

#: The highest value one judgement can give (``sure``), to map summed values into [0, 1].
VALUE_SCALE_MAX = max(VALUE_SCALE.values())

#: Depth of the search: three arithmetic steps and the final answer line.
STEPS = 4
TARGET = Fraction(24)

# --------------------------------------------------------------------------- data


def default_data_path() -> Path:
    """Where 24.csv is: ``SIGIL_GAME24_CSV``, else ``<repo>/../shared/data/game24/24.csv``."""
    env = os.environ.get("SIGIL_GAME24_CSV")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]
    candidates = [
        repo / ".." / "shared" / "data" / "game24" / "24.csv",
        Path.cwd() / ".." / "shared" / "data" / "game24" / "24.csv",
    ]
    for c in candidates:
        if c.exists():
            return c.resolve()
    return candidates[0]


def load_puzzles(path: str | os.PathLike[str] | None = None) -> list[str]:
    """The puzzles of 24.csv in rank order (its ``Puzzles`` column); index 900 is puzzle 901."""
    p = Path(path) if path is not None else default_data_path()
    with open(p, newline="", encoding="utf-8") as fh:
        return [row["Puzzles"].strip() for row in csv.DictReader(fh)]


# --------------------------------------------------------------------------- numbers


def parse_number(text: str) -> Fraction:
    """An integer, a decimal or a fraction "8/3" as an exact Fraction."""
    return Fraction(text.strip())


def fmt(value: Fraction) -> str:
    """Integers as integers, other values as a reduced fraction "8/3" (exact, and parseable)."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def current_numbers(y: str) -> str:
    """The numbers left after the state's last step, as text (the input itself when empty)."""
    last = y.strip().split("\n")[-1]
    return last.split("left: ")[-1].split(")")[0].strip()


STEP_RE = re.compile(
    r"^\s*(?P<a>-?[\d./]+)\s*(?P<op>[-+*/x×÷])\s*(?P<b>-?[\d./]+)\s*=\s*(?P<c>-?[\d./]+)"
    r"\s*\(left:\s*(?P<left>[^)]*)\)\s*$"
)


def parse_step(line: str) -> tuple[Fraction, str, Fraction, Fraction, list[Fraction]] | None:
    """``"a op b = c (left: ...)"`` as numbers, or None when the line is not a step."""
    m = STEP_RE.match(line)
    if not m:
        return None
    try:
        op = {"x": "*", "×": "*", "÷": "/"}.get(m["op"], m["op"])
        left = [parse_number(t) for t in m["left"].split()]
        return parse_number(m["a"]), op, parse_number(m["b"]), parse_number(m["c"]), left
    except (ValueError, ZeroDivisionError):
        return None


def apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else None
    return None


@lru_cache(maxsize=200_000)
def _solve(numbers: tuple[Fraction, ...]) -> str | None:
    if len(numbers) == 1:
        return fmt(numbers[0]) if numbers[0] == TARGET else None
    return _solve_exprs(tuple((n, fmt(n)) for n in numbers))


def _solve_exprs(items: tuple[tuple[Fraction, str], ...]) -> str | None:
    if len(items) == 1:
        return items[0][1] if items[0][0] == TARGET else None
    for i, j in itertools.combinations(range(len(items)), 2):
        rest = tuple(items[k] for k in range(len(items)) if k not in (i, j))
        (a, ea), (b, eb) = items[i], items[j]
        for value, expr in _combine(a, ea, b, eb):
            found = _solve_exprs(rest + ((value, expr),))
            if found is not None:
                return found
    return None


def _combine(a: Fraction, ea: str, b: Fraction, eb: str) -> list[tuple[Fraction, str]]:
    out = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})"),
           (a - b, f"({ea} - {eb})"), (b - a, f"({eb} - {ea})")]
    if b != 0:
        out.append((a / b, f"({ea} / {eb})"))
    if a != 0:
        out.append((b / a, f"({eb} / {ea})"))
    return out


def solve(numbers: Sequence[Fraction | int | str]) -> str | None:
    """An expression over ``numbers`` that makes 24 exactly, or None when there is none."""
    key = tuple(sorted(Fraction(n) if not isinstance(n, str) else parse_number(n)
                       for n in numbers))
    expr = _solve(key)
    if expr is None:
        return None
    return expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


def can_reach_24(numbers: Sequence[Fraction | int | str]) -> bool:
    return solve(numbers) is not None


# --------------------------------------------------------------------------- exact checking


_ALLOWED_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def evaluate_expression(expr: str) -> tuple[Fraction, list[int]] | None:
    """The exact value of an arithmetic expression and the integers it uses, or None.

    Only integers, ``+ - * /`` and parentheses are accepted (``x``/``×``/``÷`` are read as
    ``*``/``/``); anything else, or a division by zero, gives None.
    """
    text = expr.replace("×", "*").replace("÷", "/").replace("x", "*")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None
    used: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_OPS:
            left, right = walk(node.left), walk(node.right)
            result = apply(left, _ALLOWED_OPS[type(node.op)], right)
            if result is None:
                raise ZeroDivisionError
            return result
        if isinstance(node, ast.Constant) and isinstance(node.value, int) \
                and not isinstance(node.value, bool):
            used.append(node.value)
            return Fraction(node.value)
        raise ValueError(f"not allowed: {type(node).__name__}")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return value, used


def check_answer(puzzle: str, output: str) -> bool:
    """True when the output's last line is an equation that solves the puzzle exactly.

    As the reference's ``test_output``: the last line, without "Answer:", up to "=", must use
    exactly the puzzle's numbers (as a multiset) and equal 24.
    """
    lines = output.strip().split("\n")
    if not lines:
        return False
    expression = re.sub(r"(?i)^\s*answer:\s*", "", lines[-1]).split("=")[0]
    result = evaluate_expression(expression)
    if result is None:
        return False
    value, used = result
    wanted = sorted(int(n) for n in puzzle.split())
    return sorted(used) == wanted and value == TARGET


# --------------------------------------------------------------------------- prompts
# The reference's prompt structure (few-shot, one step per line, "(left: ...)" bookkeeping and a
# sure/likely/impossible judgement on the last line), in this project's own words and examples.

STANDARD_PROMPT = """Combine the numbers with + - * / to make 24. Use every number exactly once.
Input: 1 2 3 4
Answer: 1 * 2 * 3 * 4 = 24
Input: 3 3 8 8
Answer: 8 / (3 - 8 / 3) = 24
Input: 2 5 7 9
Answer: 5 * 7 - (2 + 9) = 24
Input: 2 6 7 9
Answer: 2 + 6 + 7 + 9 = 24
Input: 2 3 3 7
Answer: (7 - 3) * 2 * 3 = 24
Input: {input}
"""

COT_PROMPT = """Combine the numbers with + - * / to make 24. At each step, pick two of the numbers left and replace them with the result.
Input: 1 2 3 4
Steps:
1 * 2 = 2 (left: 2 3 4)
2 * 3 = 6 (left: 4 6)
6 * 4 = 24 (left: 24)
Answer: 1 * 2 * 3 * 4 = 24
Input: 2 5 7 9
Steps:
5 * 7 = 35 (left: 2 9 35)
2 + 9 = 11 (left: 11 35)
35 - 11 = 24 (left: 24)
Answer: 5 * 7 - (2 + 9) = 24
Input: 2 6 7 9
Steps:
2 + 6 = 8 (left: 7 8 9)
7 + 8 = 15 (left: 9 15)
15 + 9 = 24 (left: 24)
Answer: 2 + 6 + 7 + 9 = 24
Input: 2 3 3 7
Steps:
7 - 3 = 4 (left: 2 3 4)
2 * 3 = 6 (left: 4 6)
4 * 6 = 24 (left: 24)
Answer: (7 - 3) * (2 * 3) = 24
Input: 3 4 5 11
Steps:
3 + 4 = 7 (left: 5 7 11)
5 * 7 = 35 (left: 11 35)
35 - 11 = 24 (left: 24)
Answer: 5 * (3 + 4) - 11 = 24
Input: {input}
"""

PROPOSE_PROMPT = """Input: 3 5 6 9
Possible next steps:
3 + 5 = 8 (left: 6 8 9)
9 - 3 = 6 (left: 5 6 6)
6 / 3 = 2 (left: 2 5 9)
5 * 6 = 30 (left: 3 9 30)
9 - 6 = 3 (left: 3 3 5)
3 * 5 = 15 (left: 6 9 15)
6 + 9 = 15 (left: 3 5 15)
9 - 5 = 4 (left: 3 4 6)
Input: {input}
Possible next steps:
"""

VALUE_PROMPT = """Judge whether the numbers can reach 24 (sure/likely/impossible)
12 12
12 + 12 = 24
sure
3 4 12
3 * 4 + 12 = 12 + 12 = 24
sure
3 10
3 + 10 = 13
10 - 3 = 7
3 * 10 = 30
10 / 3 = 10/3
impossible
4 7 10
4 + 7 + 10 = 21
(10 - 7) * 4 = 12
24 is not reached yet, but the numbers are in a workable range
likely
6 6 9
6 + 6 + 9 = 21
9 * 6 / 6 = 9
24 is not reached yet, but the numbers are in a workable range
likely
10 10 12
10 + 10 + 12 = 32
(12 - 10) * 10 = 20
the numbers are too big to come back to 24
impossible
1 1 2
1 + 1 + 2 = 4
(1 + 1) * 2 = 4
the numbers are too small to reach 24
impossible
{input}
"""

VALUE_LAST_STEP_PROMPT = """Combine the numbers with + - * / to make 24. Given an input and an answer, judge (sure/impossible) whether the answer is correct: it uses every input number exactly once, no other number, and equals 24.
Input: 1 2 3 4
Answer: 1 * 2 * 3 * 4 = 24
Judge:
sure
Input: 2 5 7 9
Answer: 5 * 7 - (2 + 9) = 24
Judge:
sure
Input: 2 6 7 9
Answer: 2 + 6 + 7 + 9 = 24
Judge:
sure
Input: 1 2 3 4
Answer: (1 + 2) * 3 * 4 = 24
Judge:
impossible
Input: 2 5 7 9
Answer: 5 * (7 - 2) - 1 = 24
Judge:
impossible
Input: 2 6 7 9
Answer: (9 + 6) + 9 = 24
Judge:
impossible
Input: {input}
Answer: {answer}
Judge:"""


# --------------------------------------------------------------------------- the task


class Complete(Protocol):
    """A model: ``n`` sampled completions of ``prompt`` (each a string)."""

    def __call__(self, prompt: str, *, n: int, purpose: str,
                 stop: str | None = None) -> Awaitable[list[str]]: ...


class Game24Task:
    """The reference's task wrappers: prompts for each call, and parsing of the answers."""

    steps = STEPS
    stops: list[str | None] = ["\n"] * STEPS

    def __init__(self, puzzles: Sequence[str] | None = None) -> None:
        self.data = list(puzzles) if puzzles is not None else load_puzzles()

    def __len__(self) -> int:
        return len(self.data)

    def get_input(self, idx: int) -> str:
        return self.data[idx]

    def test_output(self, idx: int, output: str) -> bool:
        return check_answer(self.data[idx], output)

    @staticmethod
    def standard_prompt_wrap(x: str, y: str = "") -> str:
        return STANDARD_PROMPT.format(input=x) + y

    @staticmethod
    def cot_prompt_wrap(x: str, y: str = "") -> str:
        return COT_PROMPT.format(input=x) + y

    @staticmethod
    def propose_prompt_wrap(x: str, y: str = "") -> str:
        numbers = current_numbers(y if y else x)
        if numbers == "24":
            # Three steps are done: ask for the final equation, CoT-style, after the steps.
            return COT_PROMPT.format(input=x) + "Steps:\n" + y
        return PROPOSE_PROMPT.format(input=numbers)

    @staticmethod
    def value_prompt_wrap(x: str, y: str) -> str:
        last = y.strip().split("\n")[-1]
        if "left: " not in last:
            answer = re.sub(r"(?i)^\s*answer:\s*", "", last)
            return VALUE_LAST_STEP_PROMPT.format(input=x, answer=answer)
        return VALUE_PROMPT.format(input=current_numbers(y))

    @staticmethod
    def value_outputs_unwrap(x: str, y: str, outputs: Sequence[str]) -> float:
        # Four lines without an answer means the fourth step was not the equation: worthless.
        if len(y.strip().split("\n")) == STEPS and "answer" not in y.lower():
            return 0.0
        return judgements_value([o.strip().split("\n")[-1] for o in outputs])

    @staticmethod
    def reflect_prompt_wrap(x: str, y: str) -> str:
        return (f"Input: {x}\nAn attempt that did not reach 24:\n{y}"
                "In one sentence, say which step went wrong and what to try instead.\n"
                "Reflection:")

    @staticmethod
    def vote_prompt_wrap(x: str, ys: Sequence[str]) -> str:
        prompt = (f"Given the Game of 24 input {x}, decide which partial solution is most "
                  "promising. Analyse each choice, then conclude in the last line "
                  "\"The best choice is {s}\", where s is the choice's number.\n")
        for i, y in enumerate(ys, 1):
            prompt += f"Choice {i}:\n{y}\n"
        return prompt

    @staticmethod
    def vote_outputs_unwrap(outputs: Sequence[str], n_candidates: int) -> list[float]:
        votes = [0.0] * n_candidates
        for out in outputs:
            m = re.search(r"best choice is\D*(\d+)", out, re.IGNORECASE)
            if m and 1 <= int(m.group(1)) <= n_candidates:
                votes[int(m.group(1)) - 1] += 1
        return votes


# --------------------------------------------------------------------------- solving


async def tot_solve(
    task: Game24Task,
    x: str,
    complete: Complete,
    *,
    method_generate: str = "propose",
    method_evaluate: str = "value",
    method_select: str = "greedy",
    n_generate_sample: int = 1,
    n_evaluate_sample: int = 3,
    n_select_sample: int = 5,
    rng: random.Random | None = None,
) -> SearchResult:
    """Solve one puzzle with the ToT search, as the reference's ``solve`` (defaults: its
    ``scripts/game24/bfs.sh``: propose, value x3, greedy, b=5)."""
    cache: dict[str, float] = {}

    async def propose(x: str, y: str) -> list[str]:
        [text] = await complete(task.propose_prompt_wrap(x, y), n=1, purpose="tot_propose")
        return [y + line + "\n" for line in text.split("\n") if line.strip()]

    async def sample(x: str, y: str) -> list[str]:
        step = len(y.strip().split("\n")) if y.strip() else 0
        texts = await complete(task.cot_prompt_wrap(x, y), n=n_generate_sample,
                               purpose="tot_sample", stop=task.stops[min(step, STEPS - 1)])
        return [y + t.split("\n")[0] + "\n" for t in texts]

    async def value(x: str, y: str) -> float:
        outputs = await complete(task.value_prompt_wrap(x, y), n=n_evaluate_sample,
                                 purpose="tot_value")
        return task.value_outputs_unwrap(x, y, outputs)

    async def vote(x: str, ys: Sequence[str]) -> list[float]:
        outputs = await complete(task.vote_prompt_wrap(x, ys), n=n_evaluate_sample,
                                 purpose="tot_vote")
        return task.vote_outputs_unwrap(outputs, len(ys))

    generators = {"propose": propose, "sample": sample}
    evaluators = {"value": value_evaluator(value, cache=cache), "vote": vote}
    selectors = {"greedy": greedy, "sample": sampler(rng)}
    return await bfs(
        x,
        generate=generators[method_generate],
        evaluate=evaluators[method_evaluate],
        select=selectors[method_select],
        depth=task.steps,
        breadth=n_select_sample,
    )


async def mcts_solve(
    task: Game24Task,
    x: str,
    complete: Complete,
    *,
    n_simulations: int = 30,
    n_evaluate_sample: int = 3,
    c: float = 1.0,
    rollout_depth: int | None = None,
    concurrency: int = 1,
    seed: int = 0,
    reflection: bool = False,
    proceed: Any = None,
) -> Any:
    """Solve one puzzle with MCTS over the same prompts as :func:`tot_solve` (LATS style).

    Proposals come from the propose prompt (every listed next step is a child), states are
    valued by the value prompt (the reference's 20/1/0.001 sums, divided by their maximum so
    values lie in [0, 1]), and a complete state (the answer line, depth 4) is scored by the
    exact check (:func:`check_answer`), the task's verifier, as LATS uses the environment's
    reward. The search stops at the first verified answer. ``proceed(index, root) -> bool``
    is handed to :func:`~.mcts_search.mcts` (e.g. a token budget).
    """
    from .mcts_search import mcts

    cache: dict[str, float] = {}
    top = VALUE_SCALE_MAX * n_evaluate_sample

    async def propose(x: str, y: str, reflections: Sequence[str] = ()) -> list[str]:
        prompt = task.propose_prompt_wrap(x, y)
        if reflections:
            prompt = ("Lessons from earlier attempts:\n"
                      + "\n".join(f"- {r}" for r in reflections[-5:]) + "\n\n" + prompt)
        [text] = await complete(prompt, n=1, purpose="tot_propose")
        return [y + line + "\n" for line in text.split("\n") if line.strip()]

    async def value(x: str, y: str) -> float:
        outputs = await complete(task.value_prompt_wrap(x, y), n=n_evaluate_sample,
                                 purpose="tot_value")
        return task.value_outputs_unwrap(x, y, outputs) / top

    async def reward(x: str, y: str) -> float:
        return 1.0 if check_answer(x, y.strip().split("\n")[-1]) else 0.0

    async def reflect(x: str, y: str) -> str | None:
        [text] = await complete(task.reflect_prompt_wrap(x, y), n=1, purpose="mcts_reflect")
        return text.strip() or None

    return await mcts(
        x, generate=propose, evaluate=value_evaluator(value, cache=cache),
        is_terminal=lambda y: "answer" in y.strip().split("\n")[-1].lower(),
        reward=reward, reflect=reflect if reflection else None,
        simulations=n_simulations, depth=task.steps, c=c, rollout_depth=rollout_depth,
        concurrency=concurrency, seed=seed, proceed=proceed,
    )


async def naive_solve(task: Game24Task, x: str, complete: Complete, *, prompt: str = "standard",
                      n_generate_sample: int = 1) -> list[str]:
    """IO (``standard``) or CoT (``cot``) prompting: ``n`` independent samples, no search."""
    wrap = task.standard_prompt_wrap if prompt == "standard" else task.cot_prompt_wrap
    return await complete(wrap(x), n=n_generate_sample, purpose=f"naive_{prompt}")


# --------------------------------------------------------------------------- a scripted model


class ScriptedModel:
    """A model in plain arithmetic that answers the task's prompts as an LLM would.

    It reads the puzzle or the numbers left from the end of each prompt (the same prompts a
    real model gets) and writes answers in the formats the task parses:

    * ``tot_propose``: the possible next steps, one per line (all of them, or ``proposals`` of
      them drawn at random, as an LLM lists only some); after three steps, the answer line
      rebuilt from the steps.
    * ``tot_value``: a judgement ending in sure/likely/impossible. ``evaluator="exact"`` says
      sure when 24 is reachable from the numbers left and impossible otherwise;
      ``"heuristic"`` judges as the prompt's examples do, from a glance (24 made in one
      operation: sure; numbers all too small or too big: impossible; otherwise likely), so
      the search must rely on breadth, as with a real model.
    * ``naive_standard`` / ``naive_cot``: a random equation / random chain of steps (IO, CoT).
    * ``tot_sample``: one random next step (or the answer line).

    It counts tokens as the offline provider does (ceil(chars/4) of prompt and answer).
    """

    def __init__(self, *, evaluator: str = "exact", proposals: int | None = None,
                 seed: int = 0) -> None:
        if evaluator not in ("exact", "heuristic"):
            raise ValueError("evaluator must be 'exact' or 'heuristic'")
        self.evaluator = evaluator
        self.proposals = proposals
        self.rng = random.Random(seed)
        self.input_tokens = 0
        self.output_tokens = 0
        self.calls = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    async def __call__(self, prompt: str, *, n: int, purpose: str,
                       stop: str | None = None) -> list[str]:
        outs = [self._answer(prompt, purpose) for _ in range(n)]
        self.calls += n
        self.input_tokens += n * estimate_tokens(prompt)
        self.output_tokens += sum(estimate_tokens(o) for o in outs)
        await asyncio.sleep(0)  # a real model yields to the loop; keep the concurrency honest
        return outs

    # ------------------------------------------------------------------ answers

    def _answer(self, prompt: str, purpose: str) -> str:
        if purpose == "tot_propose":
            x, steps = _tail_input_and_steps(prompt)
            if steps:
                return self._final_answer(x, steps)
            numbers = [parse_number(t) for t in x.split()]
            lines = [s for s, _ in next_steps(numbers)]
            if self.proposals is not None and len(lines) > self.proposals:
                lines = self.rng.sample(lines, self.proposals)
            return "\n".join(lines)
        if purpose == "tot_value":
            return self._judge(prompt)
        if purpose == "naive_standard":
            x = prompt.rstrip().rsplit("Input:", 1)[-1].strip()
            return "Answer: " + random_expression(x.split(), self.rng) + " = 24"
        if purpose in ("naive_cot", "tot_sample"):
            x, steps = _tail_input_and_steps(prompt)
            steps = steps or []
            numbers = ([parse_number(t) for t in current_numbers(steps[-1]).split()]
                       if steps else [parse_number(t) for t in x.split()])
            out: list[str] = []
            while len(numbers) > 1:
                line, numbers = self.rng.choice(next_steps(numbers))
                out.append(line)
                if purpose == "tot_sample":
                    return line
            if purpose == "tot_sample":
                return self._final_answer(x, steps)
            return "\n".join(out + [self._final_answer(x, out)])
        if purpose == "mcts_reflect":
            m = re.search(r"did not reach 24:\n(.*?)In one sentence", prompt, re.DOTALL)
            first = (m.group(1).strip().split("\n") if m else [""])[0]
            return f"Starting with {first.split(' (')[0] or 'that step'} led nowhere; " \
                   "start with another pair of numbers."
        if purpose == "tot_vote":
            # Vote for the first choice whose numbers can still make 24 (exactly), else 1.
            choices = re.split(r"Choice \d+:\n", prompt)[1:]
            for i, y in enumerate(choices, 1):
                last = y.strip().split("\n")[-1]
                if "left: " in last and can_reach_24(current_numbers(last).split()):
                    return f"The best choice is {i}"
                m = re.search(r"Game of 24 input ([\d ]+),", prompt)
                if "left: " not in last and m and check_answer(m.group(1), last):
                    return f"The best choice is {i}"
            return "The best choice is 1"
        raise ValueError(f"the scripted model does not answer purpose {purpose!r}")

    def _final_answer(self, x: str, steps: Sequence[str]) -> str:
        expr = expression_from_steps(x, steps)
        return f"Answer: {expr} = 24" if expr else "Answer: no solution = 24"

    def _judge(self, prompt: str) -> str:
        tail = prompt.rstrip()
        if tail.endswith("Judge:"):
            m = re.search(r"Input: ([^\n]*)\nAnswer: ([^\n]*)\nJudge:$", tail)
            ok = m is not None and check_answer(m.group(1), m.group(2))
            return "sure" if ok else "impossible"
        numbers = [parse_number(t) for t in tail.rsplit("\n", 1)[-1].split()]
        if self.evaluator == "exact":
            return "sure" if can_reach_24(numbers) else "impossible"
        return glance(numbers)


def glance(numbers: Sequence[Fraction]) -> str:
    """A quick judgement as in the value prompt's examples, without searching."""
    if any(n == TARGET for n in numbers) and len(numbers) == 1:
        return "sure"
    if len(numbers) <= 2:
        pairs = [apply(numbers[0], op, numbers[-1]) for op in "+-*/"] if len(numbers) == 2 else []
        pairs += [apply(numbers[-1], op, numbers[0]) for op in "-/"] if len(numbers) == 2 else []
        return "sure" if TARGET in pairs else "impossible"
    total = sum(numbers)
    product = math.prod(numbers)
    if product < 24 and total < 24 and all(n >= 0 for n in numbers):
        return "impossible"  # too small
    if min(numbers) > 24:
        return "impossible"  # too big
    if sum(numbers) == TARGET or product == TARGET:
        return "sure"
    return "likely"


def next_steps(numbers: Sequence[Fraction]) -> list[tuple[str, list[Fraction]]]:
    """Every ``"a op b = c (left: ...)"`` step from these numbers, with the numbers left.

    Subtractions and divisions are proposed in the order that keeps the result non-negative
    and (for division) above one where possible, as a person would write them; duplicates
    (the same result and numbers left) appear once.
    """
    return [(line, list(left)) for line, left in _next_steps(tuple(numbers))]


@lru_cache(maxsize=50_000)
def _next_steps(numbers: tuple[Fraction, ...]) -> tuple[tuple[str, tuple[Fraction, ...]], ...]:
    out: list[tuple[str, tuple[Fraction, ...]]] = []
    seen: set[tuple[Fraction, ...]] = set()
    for i, j in itertools.combinations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        if a < b:
            a, b = b, a
        rest = [numbers[k] for k in range(len(numbers)) if k not in (i, j)]
        options = [(a, "+", b), (a, "*", b), (a, "-", b), (b, "-", a), (a, "/", b), (b, "/", a)]
        for p, op, q in options:
            r = apply(p, op, q)
            if r is None:
                continue
            left = sorted(rest + [r])
            key = tuple(left)
            if key in seen:
                continue
            seen.add(key)
            out.append((f"{fmt(p)} {op} {fmt(q)} = {fmt(r)} (left: {' '.join(map(fmt, left))})",
                        key))
    return tuple(out)


def expression_from_steps(x: str, steps: Sequence[str]) -> str | None:
    """Rebuild the equation over the input numbers from the step lines, or None.

    Each step's operands are matched to the numbers still available (input numbers or earlier
    results), and the result is written as the combined expression.
    """
    pool: list[tuple[Fraction, str]] = [(parse_number(t), t) for t in x.split()]
    for line in steps:
        parsed = parse_step(line)
        if parsed is None:
            continue
        a, op, b, c, _ = parsed
        ea = _take(pool, a)
        eb = _take(pool, b)
        if ea is None or eb is None:
            return None
        pool.append((c, f"({ea} {op} {eb})"))
    if len(pool) != 1 or pool[0][0] != TARGET:
        return None
    expr = pool[0][1]
    return expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


def _take(pool: list[tuple[Fraction, str]], value: Fraction) -> str | None:
    for k, (v, e) in enumerate(pool):
        if v == value:
            del pool[k]
            return e
    return None


def random_expression(numbers: Sequence[str], rng: random.Random) -> str:
    """A random well-formed expression using each number once (what IO guessing looks like)."""
    items = list(numbers)
    rng.shuffle(items)
    exprs = list(items)
    while len(exprs) > 1:
        i, j = rng.sample(range(len(exprs)), 2)
        op = rng.choice("+-*/")
        new = f"({exprs[i]} {op} {exprs[j]})"
        exprs = [e for k, e in enumerate(exprs) if k not in (i, j)] + [new]
    e = exprs[0]
    return e[1:-1] if e.startswith("(") and e.endswith(")") else e


def _tail_input_and_steps(prompt: str) -> tuple[str, list[str] | None]:
    """The last "Input: ..." of a prompt and the step lines written after it.

    None for a propose prompt (nothing written yet, next steps wanted); a list, maybe empty,
    for a CoT-style prompt, with or without the "Steps:" header (the reference appends the
    partial output right after the input line).
    """
    tail = prompt.rsplit("Input:", 1)[-1]
    first, _, rest = tail.partition("\n")
    if "Possible next steps:" in rest:
        return first.strip(), None
    lines = [ln for ln in rest.split("\n") if ln.strip() and ln.strip() != "Steps:"]
    return first.strip(), lines
