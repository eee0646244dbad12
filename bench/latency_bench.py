"""Where a run's wall time goes when every LLM call is slow: calls, their sum, the critical path.

For the spec's lead example and a research task, on the offline model with a simulated latency
per call (500 ms by default), it prints: the number of LLM calls, the sum of their durations
(what a strictly sequential run would take), the run's wall time, the ratio of the two, and the
critical path: the chain of operations that the run waited on, from the first to the last,
read back from the session's events (each operation's start and end). Targets (issue 20): with
500 ms per call the lead example within 2.5 s of run time (<= 0.5x the seed's sequential
10-call flow) with <= 7 LLM calls.

    python bench/latency_bench.py [--latency-ms 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

TASKS = {
    "lead": "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan",
    "research": "Research the market for AI meeting assistants and summarise the key players",
}


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def operations(events: list[dict]) -> list[dict]:
    """Every finished operation with its start, end and name (from its Completed event)."""
    ops = []
    for e in events:
        if e["message"].startswith(("Completed ", "Failed ")) and e.get("duration_ms"):
            end = ts(e["timestamp"])
            name = e["operation"]
            step = (e.get("metadata") or {}).get("step_name")
            ops.append({"id": e["operation_id"], "parent": e.get("parent_operation_id"),
                        "name": f"{name}[{step}]" if step else name,
                        "start": end - e["duration_ms"] / 1000, "end": end})
    return ops


def critical_path(ops: list[dict]) -> list[dict]:
    """Walk back from the operation that ended last: each time, the leaf operation that ended
    last before the current one started is what it waited on."""
    parents = {o["parent"] for o in ops}
    leaves = [o for o in ops if o["id"] not in parents]
    if not leaves:
        return []
    chain = [max(leaves, key=lambda o: o["end"])]
    while True:
        current = chain[-1]
        before = [o for o in leaves if o["end"] <= current["start"] + 0.005
                  and o["start"] < current["start"]]
        if not before:
            break
        chain.append(max(before, key=lambda o: o["end"]))
    return chain[::-1]


def measure(label: str, task: str, latency_ms: int, work: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
    env.update(SIGIL_HOME=str(work / "home"), SIGIL_OFFLINE_LATENCY_MS=str(latency_ms),
               SIGIL_WORKER_AUTO_START="0")
    session = f"latency_{label}"
    subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate", "--session", session,
                    task], cwd=work, env=env, capture_output=True, text=True, check=False)
    record = json.loads((work / "outputs" / "sessions" / f"{session}.json").read_text())
    events = record["events"]
    calls = [e for e in events if e["operation"] == "llm_call" and e["level"] == "debug"]
    call_sum = sum((e.get("duration_ms") or 0) for e in calls) / 1000
    wall = record["summary"]["duration_seconds"]
    print(f"\n{label}: {len(calls)} LLM calls, sum of call time {call_sum:.2f} s, run time "
          f"{wall:.2f} s, ratio {wall / call_sum if call_sum else float('nan'):.2f}"
          + ("   (target: <= 7 calls, <= 2.5 s at 500 ms)" if label == "lead" else ""))
    t0 = ts(events[0]["timestamp"])
    print("  critical path (start -> end s, operation):")
    for op in critical_path(operations(events)):
        print(f"    {op['start'] - t0:6.2f} -> {op['end'] - t0:6.2f}  {op['name']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"offline model, {args.latency_ms} ms per LLM call; load average "
          f"{os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, task in TASKS.items():
            measure(label, task, args.latency_ms, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
