"""The cost of recording a run in its cassette (issue 14): framework cost per LLM call and
events/s, with and without the cassette, and the cost of serving a call from a cassette.

    python bench/replay_bench.py

Targets: recording adds at most 0.1 ms per LLM call (DESIGN §8's whole per-call budget); a
replayed call costs no more than a recorded one. The events/s figures are the call loop's (one
event per call), side by side; the file sinks' own throughput is core_bench's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from core_bench import (
    InstantProvider,  # a model that answers at once (bench/ is on the path)
)

from sigil_core.config import load_config
from sigil_core.model import ExecutionContext, utcnow
from sigil_core.plugins import PluginHost
from sigil_core.replay import Cassette, CassetteRecorder, ReplayProvider
from sigil_core.run import Run

PROMPT = "Qualify this lead: John Smith, CEO at Acme Corp. " * 20  # a ~1 kB request
SYSTEM = "You are one component of Sigil. " * 30


async def per_call_ms(provider, recorder: CassetteRecorder | None, n: int) -> tuple[float, float]:
    """(ms per generate() call, events/s) for n calls."""
    config = load_config()
    ctx = ExecutionContext("sess_bench", "sess_bench", "t", 10**12, utcnow())
    run = Run(ctx, config, PluginHost(load_entry_points=False).load(), provider)
    if recorder is not None:
        run.state["cassette"] = recorder
    async with run.operation("reasoning", "bench"):
        t0 = time.perf_counter()
        for _ in range(n):
            await run.llm.generate(PROMPT, system=SYSTEM)
        elapsed = time.perf_counter() - t0
    return elapsed / n * 1000, len(run.bus.events) / elapsed


def main() -> int:
    n = int(os.environ.get("BENCH_CALLS", "5000"))
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        path = Path(tmp) / "bench.cassette.jsonl"
        off_ms, off_eps = asyncio.run(per_call_ms(InstantProvider(), None, n))
        recorder = CassetteRecorder(path, [], {"task": "bench", "provider": "instant"})
        on_ms, on_eps = asyncio.run(per_call_ms(InstantProvider(), recorder, n))
        recorder.close()
        size = path.stat().st_size
        replay = ReplayProvider(Cassette.load(path))
        replay.recorded_provider = "instant"
        replay_ms, _ = asyncio.run(per_call_ms(replay, None, n))
    added = on_ms - off_ms
    print(f"calls measured                     {n:>10,}")
    print(f"per call without cassette (ms)     {off_ms:>10.4f}")
    print(f"per call with cassette (ms)        {on_ms:>10.4f}")
    print(f"added by recording (ms)            {added:>10.4f}   target <= 0.1")
    print(f"events/s without cassette          {off_eps:>10,.0f}")
    print(f"events/s with cassette             {on_eps:>10,.0f}")
    print(f"cassette bytes per call            {size / n:>10,.0f}")
    print(f"per call served by replay (ms)     {replay_ms:>10.4f}   target <= {on_ms:.4f}")
    ok = added <= 0.1 and replay_ms <= on_ms
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
