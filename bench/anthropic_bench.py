"""Benchmark: the spec's lead example through the Anthropic provider, against the local test
server (real SDK, real HTTP), with fixed answer lengths and a simulated model latency.

    .venv/bin/python bench/anthropic_bench.py [--runs 3] [--latency-ms 500] [--output-tokens 200]

Prints, per run: LLM calls, input / output / cache-read / cache-write tokens, the share of input
read from the prompt cache, and wall time (whole CLI process, and the run as the session file
measures it). Runs share one server, so runs after the first can read the prompt cache.
Other installed plugins are disabled unless --all-plugins is given, so the figures are the
provider's with the core's builtins.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--output-tokens", type=int, default=200)
    parser.add_argument("--min-cache-tokens", type=int, default=0,
                        help="the server's smallest cacheable prefix (real API: 1024)")
    parser.add_argument("--all-plugins", action="store_true")
    args = parser.parse_args()

    from sigil_core.testing import LEAD_ANSWERS as answers
    server = subprocess.Popen(
        [sys.executable, "-m", "sigil_provider_anthropic.testing.server", "--port", "0",
         "--latency-ms", str(args.latency_ms), "--output-tokens", str(args.output_tokens),
         "--min-cache-tokens", str(args.min_cache_tokens), "--answers", str(answers)],
        stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip().split("listening on ", 1)[1]
    disabled = "" if args.all_plugins else ",".join(
        sorted({ep.name for ep in entry_points(group="sigil")} - {"anthropic"}))
    print(f"server {url}: latency {args.latency_ms:g} ms/call, text answers "
          f"{args.output_tokens} tokens, min cacheable prefix {args.min_cache_tokens}")
    print(f"{'run':>3} {'exit':>4} {'calls':>5} {'input':>7} {'output':>7} {'c.read':>7} "
          f"{'c.write':>7} {'cached%':>7} {'wall s':>7} {'run s':>6}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("ANTHROPIC_", "SIGIL_"))}
            env.update(SIGIL_HOME=str(Path(tmp) / "home"), ANTHROPIC_API_KEY="bench-key",
                       ANTHROPIC_BASE_URL=url, SIGIL_DISABLE_PLUGINS=disabled,
                       SIGIL_WORKER_AUTO_START="0")  # each run cold, no worker left behind
            for n in range(1, args.runs + 1):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate", TASK],
                                      cwd=tmp, env=env, capture_output=True, text=True, check=False)
                wall = time.perf_counter() - t0
                files = sorted((Path(tmp) / "outputs" / "sessions").glob("*.json"),
                               key=lambda p: p.stat().st_mtime)
                record = json.loads(files[-1].read_text())
                s = record["token_summary"]
                all_input = s["input_tokens"] + s["cache_read_tokens"] + s["cache_write_tokens"]
                cached = 100.0 * s["cache_read_tokens"] / all_input if all_input else 0.0
                run_s = record.get("summary", {}).get("duration_seconds", float("nan"))
                print(f"{n:>3} {proc.returncode:>4} {s['llm_calls']:>5} {s['input_tokens']:>7} "
                      f"{s['output_tokens']:>7} {s['cache_read_tokens']:>7} "
                      f"{s['cache_write_tokens']:>7} {cached:>6.1f}% {wall:>7.2f} {run_s:>6.2f}")
                if proc.returncode != 0:
                    print(proc.stdout[-800:], proc.stderr[-800:], sep="\n")
    finally:
        server.terminate()
        server.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
