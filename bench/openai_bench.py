"""Benchmark: the OpenAI provider against the local Chat Completions test server (real SDK,
real HTTP, the server in its own process).

    .venv/bin/python bench/openai_bench.py [--calls 200] [--runs 3] [--output-tokens 120]

1. Per-call overhead: the same request sent ``--calls`` times (a) as raw HTTP with httpx (the
   floor: connection reuse, JSON in and out), (b) through ``OpenAIProvider.complete`` (the SDK,
   the retry transport, translation, usage), (c) through Sigil's gateway (``run.llm.generate``
   with a schema: budget reservation, events, validation). The server answers at once, so the
   differences are the provider's and the gateway's own cost per call.
2. Cache share on repeated runs: the spec's lead example through ``sigil orchestrate
   --provider openai`` ``--runs`` times on one server, with OpenAI's smallest cacheable prefix
   (1024 tokens) and with every prefix cacheable (0): the share of prompt tokens the server
   reported as cached, per run.

Other installed plugins are disabled, so the figures are the provider's with the core's builtins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
SCHEMA = {"type": "object", "properties": {
    "intent": {"type": "string", "enum": ["simple_query", "execute_task"]},
    "complexity": {"type": "number"}}, "required": ["intent", "complexity"]}
#: Targets: what the provider may add to a call, and what a repeated run should read cached.
TARGET_OVERHEAD_MS = 5.0
TARGET_GATEWAY_MS = 10.0


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "sigil_provider_openai.testing.server",
                             "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    return proc, line.split("listening on ", 1)[1]


async def overhead(url: str, calls: int) -> dict[str, list[float]]:
    import httpx
    from sigil_provider_openai.provider import OpenAIProvider
    from sigil_provider_openai.settings import OpenAISettings

    from sigil_core.config import Config
    from sigil_core.llm import LLMRequest
    from sigil_core.model import ExecutionContext, utcnow
    from sigil_core.plugins import PluginHost
    from sigil_core.run import Run

    provider = OpenAIProvider(OpenAISettings(api_key="bench-key", base_url=url,
                                             model="gpt-bench", structured="json_schema"))
    request = LLMRequest(messages=[{"role": "user", "content": TASK}], system="Route it.",
                         schema=SCHEMA, schema_name="RouteAnswer", max_tokens=200)
    body = provider.params(request)
    times: dict[str, list[float]] = {"raw": [], "provider": [], "gateway": []}
    async with httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer bench-key"}
                                 ) as raw:
        for _ in range(10):  # warm both connection pools
            (await raw.post("/chat/completions", json=body)).json()
            await provider.complete(request)
        for _ in range(calls):
            t0 = time.perf_counter()
            (await raw.post("/chat/completions", json=body)).json()
            times["raw"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await provider.complete(request)
            times["provider"].append(time.perf_counter() - t0)
    sid = "sess_bench"
    run = Run(ExecutionContext(sid, sid, TASK, 100_000_000, utcnow()), Config(),
              PluginHost(load_entry_points=False), provider)
    run.activate()
    for _ in range(calls):
        t0 = time.perf_counter()
        await run.llm.generate(TASK, system="Route it.", schema=SCHEMA, max_tokens=200,
                               component="router")
        times["gateway"].append(time.perf_counter() - t0)
    await provider.aclose()
    return times


def cache_runs(runs: int, output_tokens: int, min_cache: int) -> list[tuple]:
    from sigil_core.testing import LEAD_ANSWERS

    server, url = start_server("--answers", str(LEAD_ANSWERS), "--output-tokens",
                               str(output_tokens), "--min-cache-tokens", str(min_cache))
    disabled = ",".join(sorted({ep.name for ep in entry_points(group="sigil")} - {"openai"}))
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("OPENAI_", "ANTHROPIC_", "SIGIL_"))}
            env.update(SIGIL_HOME=str(Path(tmp) / "home"), OPENAI_API_KEY="bench-key",
                       OPENAI_BASE_URL=url, SIGIL_DISABLE_PLUGINS=disabled,
                       SIGIL_WORKER_AUTO_START="0")  # each run cold, no worker left behind
            for n in range(1, runs + 1):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate",
                                       "--provider", "openai", TASK], cwd=tmp, env=env,
                                      capture_output=True, text=True, check=False)
                wall = time.perf_counter() - t0
                files = sorted((Path(tmp) / "outputs" / "sessions").glob("*.json"),
                               key=lambda p: p.stat().st_mtime)
                s = json.loads(files[-1].read_text())["token_summary"]
                prompt = s["input_tokens"] + s["cache_read_tokens"]
                share = 100.0 * s["cache_read_tokens"] / prompt if prompt else 0.0
                rows.append((n, proc.returncode, s["llm_calls"], prompt, s["cache_read_tokens"],
                             s["output_tokens"], share, wall))
    finally:
        server.terminate()
        server.wait(timeout=5)
    return rows


def ms(values: list[float]) -> tuple[float, float]:
    return statistics.median(values) * 1000, statistics.fmean(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output-tokens", type=int, default=120)
    args = parser.parse_args()

    server, url = start_server("--min-cache-tokens", "0")
    try:
        times = asyncio.run(overhead(url, args.calls))
    finally:
        server.terminate()
        server.wait(timeout=5)
    raw_med, raw_mean = ms(times["raw"])
    print(f"Per-call time against the test server ({args.calls} calls each, server answers at "
          "once)")
    print(f"{'path':<34} {'median ms':>9} {'mean ms':>8} {'added (median)':>15} {'target':>8}")
    print(f"{'raw HTTP (httpx, the floor)':<34} {raw_med:>9.2f} {raw_mean:>8.2f} {'-':>15} "
          f"{'-':>8}")
    for key, label, target in (("provider", "OpenAIProvider.complete (SDK)", TARGET_OVERHEAD_MS),
                               ("gateway", "run.llm.generate (gateway)", TARGET_GATEWAY_MS)):
        med, mean = ms(times[key])
        added = med - raw_med
        verdict = "ok" if added <= target else "MISSED"
        print(f"{label:<34} {med:>9.2f} {mean:>8.2f} {added:>12.2f} ms {f'<= {target:g}':>8} "
              f"{verdict}")

    for min_cache in (1024, 0):
        print(f"\nLead example, {args.runs} runs on one server, min cacheable prefix {min_cache}"
              " tokens")
        print(f"{'run':>3} {'exit':>4} {'calls':>5} {'prompt':>7} {'cached':>7} {'output':>7} "
              f"{'cached%':>7} {'wall s':>7}")
        for n, code, calls, prompt, cached, output, share, wall in cache_runs(
                args.runs, args.output_tokens, min_cache):
            print(f"{n:>3} {code:>4} {calls:>5} {prompt:>7} {cached:>7} {output:>7} "
                  f"{share:>6.1f}% {wall:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
