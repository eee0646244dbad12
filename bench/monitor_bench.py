"""Monitor benchmark: emit->client latency (p50/p99) with 1, 10 and 100 clients, events/s, and a
run's wall time with no monitor client vs 100 readers + 1 stalled client.

    .venv/bin/python bench/monitor_bench.py [--rate 200] [--seconds 3] [--runs 3]

The server runs as `sigil monitor serve` in its own process, as in real use. Events are emitted
by the real transport (WebSocketMonitorTransport.publish) in a child process; each carries its
emit time, and every client records receive - emit (same machine, same clock). Clients use the
config of the spec's monitor.py (buffer_size 10, flush_interval_ms 100). Target (DESIGN §8):
p99 <= 150 ms with 100 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAM = "/monitoring/v1/logs/stream"
TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cwd: str, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "sigil_monitor_ws", "serve", "--port",
                             str(port), "--no-follow"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("monitor server did not start")


def emitter(server_port: int, session: str, rate: float, count: int, batch: int) -> None:
    """Child process: emit `count` events at `rate`/s through the real transport."""
    from sigil_monitor_ws.transport import WebSocketMonitorTransport

    from sigil_core.model import LogEvent

    class Cfg:
        home = Path(tempfile.gettempdir())
        outputs_dir = Path(tempfile.gettempdir()) / "monitor_bench_outputs"

        class cli:
            class monitor:
                host, port = "127.0.0.1", server_port

        def section(self, name):
            return {}

    class Run:
        config, session_id, bus = Cfg(), session, None

    async def main() -> None:
        t = WebSocketMonitorTransport().bind(Run)
        await t.start(Run)
        while not t.connected:
            await asyncio.sleep(0.01)
        interval = batch / rate if rate else 0
        n = 0
        next_at = time.perf_counter()
        while n < count:
            events = []
            for _ in range(min(batch, count - n)):
                n += 1
                events.append(LogEvent(
                    id=f"log_bench_{session}_{n:07d}", timestamp="2026-01-11T14:30:00.000Z",
                    level="info", component="reasoning", operation="bench",
                    message=f"event {n}", session_id=session, correlation_id=session,
                    operation_id=f"op_{n}", metadata={"emit": time.time(), "n": n}))
            t.publish(events)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await t.stop()

    asyncio.run(main())


async def measure(port: int, clients: int, rate: float, seconds: float, batch: int,
                  config: dict) -> dict:
    from websockets.asyncio.client import connect

    session = f"sess_bench_{clients}_{int(rate)}"
    count = int(rate * seconds) if rate else int(seconds)
    lat: list[float] = []
    done_at: list[float] = []
    url = f"ws://127.0.0.1:{port}{STREAM}?session_id={session}"
    conns = [await connect(url, max_size=None) for _ in range(clients)]
    for ws in conns:
        await ws.send(json.dumps({"type": "config", **config}))

    async def reader(ws) -> None:
        got = 0
        async for raw in ws:
            now = time.time()
            msg = json.loads(raw)
            if msg["type"] in ("log", "buffer_flush"):
                for e in msg["entries"]:
                    lat.append(now - e["metadata"]["emit"])
                got += len(msg["entries"])
                if got >= count:
                    done_at.append(now)
                    return

    tasks = [asyncio.create_task(reader(ws)) for ws in conns]
    await asyncio.sleep(0.5)  # let every client's config land before the first event
    proc = mp.get_context("spawn").Process(target=emitter, args=(port, session, rate, count, batch))
    t0 = time.time()
    proc.start()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    proc.join()
    for ws in conns:
        await ws.close()
    lat.sort()
    return {"clients": clients, "events": count, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1], "max_ms": 1000 * lat[-1],
            "wall_s": max(done_at) - t0}


def run_wall(cwd: str, env: dict, session: str) -> float:
    """The run's own duration (session summary: initialize .. transports stopped), which
    leaves out interpreter start-up, the part most sensitive to other load on the machine."""
    proc = subprocess.run([sys.executable, "-m", "sigil_core", "orchestrate", "--monitor",
                           "--session", session, TASK], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    record = json.loads((Path(cwd) / "outputs" / "sessions" / f"{session}.json").read_text())
    return record["summary"]["duration_seconds"]


async def wall_times(port: int, cwd: str, env: dict, runs: int) -> tuple[float, float]:
    """Alternate quiet and busy runs so that load from elsewhere on the machine hits both."""
    from websockets.asyncio.client import connect

    async def drain(ws) -> None:
        async for _ in ws:
            pass

    quiet, busy = [], []
    for i in range(runs):
        quiet.append(await asyncio.to_thread(run_wall, cwd, env, f"sess_wall_q{i}"))
        readers = [await connect(f"ws://127.0.0.1:{port}{STREAM}?session_id=sess_wall_b{i}")
                   for _ in range(100)]
        tasks = [asyncio.create_task(drain(ws)) for ws in readers]
        _r, w = await asyncio.open_connection("127.0.0.1", port)  # a client that never reads
        w.write(f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        w.transport.pause_reading()
        await asyncio.sleep(0.5)
        busy.append(await asyncio.to_thread(run_wall, cwd, env, f"sess_wall_b{i}"))
        for t in tasks:
            t.cancel()
        for ws in readers:
            await ws.close()
        w.close()
    return statistics.median(quiet), statistics.median(busy)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="events/s for the latency runs")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=5, help="orchestrate runs per wall-time case")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="monitor_bench_")
    port = free_port()
    env = {**os.environ, "SIGIL_HOME": str(Path(tmp) / "home"), "SIGIL_MONITOR_PORT": str(port),
           "SIGIL_WORKER_AUTO_START": "0"}  # runs in their own processes, none left behind
    env.pop("ANTHROPIC_API_KEY", None)
    server = start_server(port, tmp, env)
    monitor_py = {"buffer_size": 10, "flush_interval_ms": 100, "heartbeat_interval_ms": 1000}
    try:
        print(f"emit->client latency, {args.rate:.0f} events/s for {args.seconds:.0f} s, "
              "monitor.py config (buffer 10, flush 100 ms):")
        for n in (1, 10, 100):
            r = await measure(port, n, args.rate, args.seconds, 10, monitor_py)
            print(f"  {n:>3} clients: p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
                  f"max {r['max_ms']:6.1f} ms  ({r['events']} events)")
        print("throughput (emit as fast as possible, 20000 events, buffer 100, flush 100 ms):")
        for n in (1, 10):
            r = await measure(port, n, 0, 20000, 200, {"buffer_size": 100,
                                                       "flush_interval_ms": 100})
            print(f"  {n:>3} clients: {r['events'] / r['wall_s']:8.0f} events/s to every client "
                  f"({r['events'] * n / r['wall_s']:8.0f} deliveries/s)")
        quiet, busy = await wall_times(port, tmp, env, args.runs)
        print(f"orchestrate --monitor run duration (median of {args.runs}): no clients "
              f"{quiet:.3f} s; 100 readers + 1 stalled client {busy:.3f} s "
              f"({100 * (busy - quiet) / quiet:+.1f}%)")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
