"""Benchmarks of the tools_mcp plugin: tool-call overhead, MCP connection and call latency.

    .venv/bin/python bench/tools_bench.py [--calls 300]

Prints figures; asserts nothing. Uses the fake MCP server of the plugin's tests (stdio, the
SDK's own server) and, when it is installed (see the tests' fixture), mcp-server-time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "plugins" / "tools_mcp" / "tests" / "tools_mcp_fake_server.py"
TIME_SERVER = Path(os.environ.get("SIGIL_MCP_TIME_VENV", "/tmp/sigil-mcp-time-venv")) / "bin" / \
    "mcp-server-time"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def bench_core_overhead(calls: int) -> None:
    """run.call_tool on the builtin calculator: validation + events + the tool itself."""
    import sigil_tools_mcp.plugin
    from sigil_tools_mcp.builtin import CalculatorTool

    from sigil_core.builtin.offline import OfflineProvider
    from sigil_core.config import load_config
    from sigil_core.model import ExecutionContext, utcnow
    from sigil_core.plugins import PluginHost
    from sigil_core.run import Run

    host = PluginHost(load_entry_points=False).load()
    host.register(sigil_tools_mcp.plugin, name="tools_mcp")
    run = Run(ExecutionContext("b", "b", "t", 100_000, utcnow()), load_config(), host,
              OfflineProvider())
    tool = CalculatorTool()
    args = {"expression": "(17 + 4) * 3 / 7"}
    t0 = time.perf_counter()
    for _ in range(calls):
        await tool.call(args)
    direct = (time.perf_counter() - t0) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        await run.call_tool("calculator", args)
    through = (time.perf_counter() - t0) / calls
    print(f"builtin calculator, direct call:          {direct * 1e6:8.1f} µs/call")
    print(f"builtin calculator, through run.call_tool: {through * 1e6:8.1f} µs/call "
          f"(validation + 2 events: {(through - direct) * 1e6:.1f} µs)")


async def bench_server(name: str, entry: dict, tool: str, args: dict, calls: int) -> None:
    from sigil_tools_mcp.client import SessionPool
    from sigil_tools_mcp.config import parse_servers

    servers = parse_servers({name: entry})
    connects = []
    for _ in range(3):
        pool = SessionPool(servers)
        t0 = time.perf_counter()
        await pool.get(name)
        connects.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        await pool.aclose()
        close = time.perf_counter() - t1
    pool = SessionPool(servers)
    conn = await pool.get(name)
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await conn.call(tool, args)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await asyncio.gather(*(conn.call(tool, args) for _ in range(calls)))
    concurrent = time.perf_counter() - t0
    await pool.aclose()
    print(f"{name}: connect (spawn + initialize + list_tools) median {ms(statistics.median(connects))}"
          f", close {ms(close)}")
    print(f"{name}: {tool} over one reused session: p50 {ms(pct(lat, 0.5))}, "
          f"p95 {ms(pct(lat, 0.95))}, {calls / sum(lat):.0f} calls/s sequential, "
          f"{calls / concurrent:.0f} calls/s with {calls} concurrent")
    print(f"{name}: reconnecting per call would cost ~{statistics.median(connects) / pct(lat, 0.5):.0f}x "
          f"the reused-session latency")


async def bench_react(runs: int) -> None:
    """One offline react step that calls two builtin tools (wall time, framework only)."""
    import sigil_tools_mcp.plugin
    from sigil_tools_mcp.react import ReactStrategy

    from sigil_core.builtin.offline import OfflineProvider
    from sigil_core.config import load_config
    from sigil_core.model import ExecutionContext, PlanStep, utcnow
    from sigil_core.plugins import PluginHost
    from sigil_core.run import Run, StepContext

    host = PluginHost(load_entry_points=False).load()
    host.register(sigil_tools_mcp.plugin, name="tools_mcp")
    config = load_config()
    times = []
    for _ in range(runs):
        run = Run(ExecutionContext("b", "b", "t", 100_000, utcnow()), config, host,
                  OfflineProvider())
        step = PlanStep(name="s", description="Compute (17 + 4) * 3 and the time in Tokyo",
                        complexity="critical", tools_required=["calculator", "current_time"])
        t0 = time.perf_counter()
        await ReactStrategy().execute(run, step, StepContext(task=step.description, step=step))
        times.append(time.perf_counter() - t0)
    print(f"react offline step (3 model calls, 2 tool calls): p50 {ms(pct(times, 0.5))}, "
          f"p95 {ms(pct(times, 0.95))}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    opts = parser.parse_args()
    os.environ["SIGIL_HOME"] = tempfile.mkdtemp(prefix="sigil-tools-bench-")
    os.chdir(os.environ["SIGIL_HOME"])
    await bench_core_overhead(opts.calls * 10)
    await bench_react(50)
    await bench_server("fake", {"command": sys.executable, "args": [str(FAKE)]}, "add",
                       {"a": 1, "b": 2}, opts.calls)
    if TIME_SERVER.exists():
        await bench_server("time", {"command": str(TIME_SERVER)}, "get_current_time",
                           {"timezone": "Europe/Paris"}, opts.calls)
    else:
        print(f"mcp-server-time not installed at {TIME_SERVER}; run the plugin's tests first")


if __name__ == "__main__":
    asyncio.run(main())
