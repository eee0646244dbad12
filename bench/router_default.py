"""Benchmark for the router_default plugin: fast-path speed and coverage, and routing tokens
against the spec's two-call routing, on the plugin's labelled set (offline provider).

    .venv/bin/python bench/router_default.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

LABELLED = Path(__file__).resolve().parents[1] / "plugins/router_default/tests/router_default_labelled.yaml"

# The spec's two routing prompts (cli-execution-flow.md, Phase 2), answered with a bare
# intent name and a bare number.
SPEC_INTENT = """Classify this request into one of:
- create_agent: User wants to create a new agent
- execute_task: User wants to execute a task with an agent
- simple_query: User has a simple question
- modify_agent: User wants to modify an existing agent

Request: {task}

Return only the intent name."""
SPEC_COMPLEXITY = """Rate the complexity of this request from 0.0 to 1.0:

Request: {task}

Consider: steps required, ambiguity, real-world interaction needs.
Return only a number."""


async def main() -> None:
    os.environ["SIGIL_HOME"] = tempfile.mkdtemp(prefix="sigil_bench_router_")
    from sigil_router_default import plugin
    from sigil_router_default.classifier import Classifier

    from sigil_core import estimate_tokens
    from sigil_core.config import load_config
    from sigil_core.model import ExecutionContext, utcnow
    from sigil_core.plugins import PluginHost
    from sigil_core.run import Run

    items = yaml.safe_load(LABELLED.read_text())
    texts = [i["text"] for i in items]

    clf = Classifier(["lead_qualifier", "researcher", "weekly_digest", "market_scout"])
    rounds = 50
    t0 = time.perf_counter()
    for _ in range(rounds):
        for t in texts:
            clf.classify(t)
    per_classify_us = (time.perf_counter() - t0) / (rounds * len(texts)) * 1e6

    host = PluginHost(load_entry_points=False).load()
    host.register(plugin, name="router_default")
    config = load_config()
    provider = host.registry("providers")["offline"]
    ours = fast = llm_calls = 0
    route_ms = []
    for item in items:
        ctx = ExecutionContext("bench", "bench", item["text"], config.budget.total, utcnow())
        run = Run(ctx, config, host, provider)
        t = time.perf_counter()
        async with run.operation("router", "route_request"):
            decision = await host.call_first("sigil_route", run=run, task=item["text"])
        route_ms.append((time.perf_counter() - t) * 1000)
        s = run.summary()
        ours += s.total_tokens
        llm_calls += s.llm_calls
        fast += decision.source == "fast_path"
    spec = sum(estimate_tokens(SPEC_INTENT.format(task=t)) + estimate_tokens("execute_task")
               + estimate_tokens(SPEC_COMPLEXITY.format(task=t)) + estimate_tokens("0.65") for t in texts)
    n = len(items)
    print(f"labelled requests:            {n}")
    print(f"fast-path classify:           {per_classify_us:.0f} us/request (local, 0 tokens)")
    print(f"route hook, offline provider: p50 {statistics.median(route_ms):.2f} ms, "
          f"max {max(route_ms):.2f} ms")
    print(f"fast-path coverage:           {fast}/{n} = {fast / n:.1%}")
    print(f"LLM routing calls:            {llm_calls} (spec: {2 * n})")
    print(f"routing tokens:               {ours:,} (spec two-call estimate: {spec:,}; "
          f"{ours / spec:.1%} of it, {ours / n:.1f}/request vs {spec / n:.1f})")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
