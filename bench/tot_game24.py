"""Game of 24 with IO, CoT, Tree of Thoughts and MCTS: success, tokens and wall time per method.

The reference's benchmark (Yao et al., 2023; princeton-nlp/tree-of-thought-llm): puzzles
901-1000 of 24.csv (rows 900..999), IO and CoT prompting with 100 samples each, ToT with
propose / value x3 / greedy and breadth b = 1 or 5, depth 4. The paper reports, with GPT-4:
IO 7.3%, CoT 4.0%, ToT b=1 45%, ToT b=5 74%.

Models:

* ``scripted`` (always): :class:`sigil_reasoning_tot.game24.ScriptedModel`, an arithmetic
  proposer/evaluator answering the same prompts, so the search itself is measured. IO and CoT
  are random equations / random step chains; ToT runs twice, with a *heuristic* evaluator
  (judges at a glance, as the value prompt's examples do, and lists 8 of the possible next
  steps, as an LLM does) and with an *exact* evaluator (sure iff 24 is reachable), with which
  b=5 must solve every solvable puzzle.
* ``sigil`` (when a provider other than the offline one is available, e.g. ANTHROPIC_API_KEY or
  OPENAI_API_KEY is set, or with ``--provider NAME``): the same prompts through Sigil's LLM
  gateway. ``--provider openai --model gpt-4`` runs the paper's setting on OpenAI; an
  OpenAI-compatible endpoint profile works too (``--provider openai:vllm``).

Usage::

    python bench/tot_game24.py                 # all 100 puzzles, scripted (+ provider if any)
    python bench/tot_game24.py --limit 20      # the first 20 of them
    python bench/tot_game24.py --provider anthropic --samples 10
    python bench/tot_game24.py --provider openai --model gpt-4 --samples 10

MCTS (LATS style, the ``mcts`` strategy's search) runs on the same prompts with the exact check
as its verifier, at the same token budget per puzzle as ToT b=5 with the same evaluator: it
stops when it has spent that many tokens on a puzzle (or found a verified answer).

Success: IO/CoT, the mean over samples (the paper's figure) and "any" (best of n); ToT, any
of the b final states correct (the reference's ``cnt_any``), and "best", the single best state
(what the Sigil strategy answers from); MCTS, the best terminal state (verified ones first) and
"any" verified terminal state. Tokens are ceil(chars/4) of
prompts and answers for the scripted model, the provider's reported usage otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

try:
    from sigil_reasoning_tot import game24
except ImportError:  # run from a checkout without the plugin installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "reasoning_tot"))
    from sigil_reasoning_tot import game24

PAPER = {"IO": "7.3%", "CoT": "4.0%", "ToT b=1": "45%", "ToT b=5": "74%"}


class Counted:
    """Wraps a model coroutine with call/token counters (for the provider-backed model)."""

    def __init__(self, complete: Callable[..., Awaitable[list[str]]]) -> None:
        self.complete = complete
        self.calls = 0
        self.total_tokens = 0

    async def __call__(self, prompt: str, *, n: int, purpose: str,
                       stop: str | None = None) -> list[str]:
        texts, tokens = await self.complete(prompt, n=n, purpose=purpose, stop=stop)
        self.calls += n
        self.total_tokens += tokens
        return texts


async def run_method(name: str, task: game24.Game24Task, indices: list[int], model: Any,
                     *, samples: int, concurrency: int, **tot: Any) -> dict[str, Any]:
    calls0, tokens0 = model.calls, model.total_tokens
    sem = asyncio.Semaphore(concurrency)
    mean_acc = 0.0
    any_ok = 0
    best_ok = 0
    unsolved: list[str] = []

    async def one(idx: int) -> None:
        nonlocal mean_acc, any_ok, best_ok
        x = task.get_input(idx)
        async with sem:
            if name in ("IO", "CoT"):
                ys = await game24.naive_solve(task, x, model,
                                              prompt="standard" if name == "IO" else "cot",
                                              n_generate_sample=samples)
                best = ys[0] if ys else ""
            elif name == "MCTS":
                budget = tot.pop("token_budget", None)
                start = model.total_tokens
                proceed = (None if budget is None
                           else lambda i, root: model.total_tokens - start < budget)
                result = await game24.mcts_solve(task, x, model, proceed=proceed, **tot)
                tot["token_budget"] = budget
                ys = [n.state for n in result.terminals]
                best = result.best.state
            else:
                result = await game24.tot_solve(task, x, model, **tot)
                ys = [n.state for n in result.frontier]
                best = result.best.state
        accs = [task.test_output(idx, y) for y in ys] or [False]
        mean_acc += sum(accs) / len(accs)
        any_ok += any(accs)
        best_ok += task.test_output(idx, best)
        if not any(accs):
            unsolved.append(x)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in indices))
    wall = time.perf_counter() - t0
    n = len(indices)
    return {
        "success": mean_acc / n if name in ("IO", "CoT") else any_ok / n,
        "any": any_ok / n,
        "best": best_ok / n if name not in ("IO", "CoT") else None,
        "tokens": model.total_tokens - tokens0,
        "calls": model.calls - calls0,
        "wall": wall,
        "unsolved": unsolved,
    }


def print_table(title: str, rows: list[tuple[str, dict[str, Any]]], n: int) -> None:
    print(f"\n{title} ({n} puzzles)")
    head = f"{'method':<34}{'success':>9}{'best':>8}{'any':>8}{'tokens':>12}{'tok/puzzle':>12}" \
           f"{'calls':>9}{'wall s':>9}{'paper':>8}"
    print(head)
    print("-" * len(head))
    for label, r in rows:
        paper = PAPER.get(label.split(" (")[0], "")
        best = f"{r['best']:.1%}" if r.get("best") is not None else "-"
        print(f"{label:<34}{r['success']:>8.1%}{best:>8}{r['any']:>8.1%}{r['tokens']:>12,}"
              f"{r['tokens'] // max(1, n):>12,}{r['calls']:>9,}{r['wall']:>9.2f}{paper:>8}")


async def scripted(task: game24.Game24Task, indices: list[int], samples: int) -> bool:
    rows: list[tuple[str, dict[str, Any]]] = []
    naive = game24.ScriptedModel(seed=0)
    rows.append((f"IO (n={samples})", await run_method("IO", task, indices, naive,
                                                       samples=samples, concurrency=1)))
    rows.append((f"CoT (n={samples})", await run_method("CoT", task, indices, naive,
                                                        samples=samples, concurrency=1)))
    exact_b5: dict[str, Any] = {}
    for evaluator, proposals in (("heuristic", 8), ("exact", None)):
        for b in (1, 5):
            model = game24.ScriptedModel(evaluator=evaluator, proposals=proposals, seed=0)
            r = await run_method("ToT", task, indices, model, samples=samples, concurrency=1,
                                 n_select_sample=b, n_evaluate_sample=3)
            rows.append((f"ToT b={b} ({evaluator} value)", r))
        tot_b5 = rows[-1][1]
        if evaluator == "exact":
            exact_b5 = tot_b5
        # MCTS at ToT b=5's token budget per puzzle. (No self-reflection row here: the scripted
        # model ignores lessons, so it would only measure the extra calls.)
        per_puzzle = tot_b5["tokens"] // max(1, len(indices))
        model = game24.ScriptedModel(evaluator=evaluator, proposals=proposals, seed=0)
        r = await run_method("MCTS", task, indices, model, samples=samples, concurrency=1,
                             n_simulations=1000, n_evaluate_sample=3, rollout_depth=None,
                             token_budget=per_puzzle)
        rows.append((f"MCTS ({evaluator} value)", r))
    print_table("Scripted arithmetic model (offline)", rows, len(indices))
    solvable = [task.get_input(i) for i in indices if game24.can_reach_24(task.get_input(i).split())]
    missed = [x for x in exact_b5["unsolved"] if x in solvable]
    print(f"\nsolvable puzzles: {len(solvable)}/{len(indices)}; "
          f"ToT b=5 with exact evaluation missed {len(missed)} of them"
          + (f": {missed}" if missed else ""))
    return not missed


async def with_provider(task: game24.Game24Task, indices: list[int], samples: int,
                        provider_name: str | None, concurrency: int,
                        model_name: str | None = None) -> None:
    import uuid

    from sigil_core.config import load_config
    from sigil_core.model import ExecutionContext, utcnow
    from sigil_core.orchestrator import choose_provider
    from sigil_core.plugins import PluginHost
    from sigil_core.run import Run

    config = load_config()
    if model_name:
        config.llm.model = model_name
    host = PluginHost().load()
    provider = choose_provider(config, host, provider_name)
    if provider.name == "offline" and provider_name is None:
        print("\nNo LLM provider configured (set ANTHROPIC_API_KEY or OPENAI_API_KEY, or pass "
              "--provider): "
              "skipping the provider run.")
        return
    sid = f"bench_{uuid.uuid4().hex[:8]}"
    run = Run(ExecutionContext(sid, sid, "Game of 24 benchmark", 50_000_000, utcnow()),
              config, host, provider)

    async def complete(prompt: str, *, n: int, purpose: str, stop: str | None = None):
        results = await asyncio.gather(*(
            run.llm.generate(prompt, purpose=purpose, component="reasoning", temperature=0.7,
                             max_tokens=400)
            for _ in range(n)))
        texts = [r.text if stop is None else r.text.split(stop)[0] for r in results]
        return texts, sum(r.usage.total_tokens for r in results)

    model = Counted(complete)
    rows = []
    for label, name, extra in (
        (f"IO (n={samples})", "IO", {}),
        (f"CoT (n={samples})", "CoT", {}),
        ("ToT b=1", "ToT", {"n_select_sample": 1}),
        ("ToT b=5", "ToT", {"n_select_sample": 5}),
    ):
        rows.append((label, await run_method(name, task, indices, model, samples=samples,
                                             concurrency=concurrency, n_evaluate_sample=3,
                                             **extra)))
    per_puzzle = rows[-1][1]["tokens"] // max(1, len(indices))
    for reflection in (False, True):
        rows.append(("MCTS" + (" +reflect" if reflection else "") + " (ToT b=5's tokens)",
                     await run_method("MCTS", task, indices, model, samples=samples,
                                      concurrency=concurrency, n_simulations=1000,
                                      n_evaluate_sample=3, rollout_depth=None,
                                      reflection=reflection, token_budget=per_puzzle)))
    print_table(f"Provider {provider.name} through Sigil's gateway", rows, len(indices))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None,
                        help="24.csv (default: SIGIL_GAME24_CSV or ../shared/data/game24)")
    parser.add_argument("--start", type=int, default=900, help="first row (puzzle 901)")
    parser.add_argument("--end", type=int, default=1000, help="row after the last")
    parser.add_argument("--limit", type=int, default=None, help="only the first N puzzles")
    parser.add_argument("--samples", type=int, default=100, help="IO/CoT samples per puzzle")
    parser.add_argument("--provider", default=None, help="run through this Sigil provider too")
    parser.add_argument("--model", default=None,
                        help="model id for the provider run (default: llm.model / the "
                             "provider's)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="puzzles in flight with a provider")
    args = parser.parse_args(argv)

    path = Path(args.data) if args.data else game24.default_data_path()
    if not path.exists():
        print(f"error: Game of 24 data not found at {path}; pass --data or set "
              "SIGIL_GAME24_CSV", file=sys.stderr)
        return 2
    task = game24.Game24Task(game24.load_puzzles(path))
    indices = list(range(args.start, min(args.end, len(task))))
    if args.limit:
        indices = indices[: args.limit]
    print(f"Game of 24, puzzles {indices[0] + 1}-{indices[-1] + 1} of {path}")
    ok = asyncio.run(scripted(task, indices, args.samples))
    if args.provider or os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("OPENAI_API_KEY"):
        asyncio.run(with_provider(task, indices, min(args.samples, 10), args.provider,
                                  args.concurrency, args.model))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
