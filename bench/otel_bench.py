"""sink_otel's cost: events/s into the sinks with and without it, and a whole run's time.

    python bench/otel_bench.py

Spans go to a real OTLP/HTTP receiver on 127.0.0.1 (the tests' protobuf-decoding one), so the
figures include the SDK's encoding and the HTTP export. Two event figures per configuration:
"emit" is the run's own thread (events handed to every sink: what a run pays while it runs),
"end to end" waits until the worker has turned every event into spans and the receiver has
them all (the flush bound is lifted for the bench).

Targets: >= 50,000 events/s into the sinks on the run's thread with sink_otel on (DESIGN §8's
figure for the file sinks); an offline lead run at most 50 ms longer with sink_otel on (its
whole trace exported before the run returns).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "plugins" / "sink_otel" / "tests"

from typing import Self

from sigil_core.config import load_config
from sigil_core.model import ExecutionContext, utcnow
from sigil_core.orchestrator import Orchestrator, RunOptions
from sigil_core.plugins import PluginHost
from sigil_core.run import Run

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
N_EVENTS = 100_000


class RemoteReceiver:
    """The receiver in a process of its own, so that decoding the requests does not compete
    with the measured process for its interpreter lock."""

    def __enter__(self) -> Self:
        code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from otlp_receiver import "
                "Receiver\nwith Receiver() as r:\n    print(r.url, flush=True)\n"
                "    r.serve_counts()")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(TESTS)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()

    def count(self) -> int:
        with urllib.request.urlopen(self.url + "/count", timeout=10) as response:
            return int(json.loads(response.read())["spans"])


class InstantProvider:
    name = "instant"
    priority = 0

    def available(self, config):
        return True


def config_for(endpoint: str | None):
    config = load_config()
    if endpoint:
        # No wait bound here: the end-to-end figure waits for every span.
        config.sections["otel"] = {"endpoint": endpoint, "flush_timeout_ms": 600_000}
    return config


async def event_rate(host: PluginHost, endpoint: str | None, session: str,
                     receiver: RemoteReceiver | None) -> tuple[float, float, int]:
    config = config_for(endpoint)
    ctx = ExecutionContext(session, session, "t", 1000, utcnow())
    run = Run(ctx, config, host, InstantProvider())
    sinks = Orchestrator(config, host)._open_sinks(run)
    before = receiver.count() if receiver else 0
    t0 = time.perf_counter()
    # Operations with a start and a completion event each: the shape of a real run.
    for i in range(N_EVENTS // 2):
        async with run.operation("reasoning", "bench", {"i": i}):
            pass
    run.bus.flush()
    emitted = time.perf_counter() - t0
    for sink in sinks:
        sink.close(run, {"session_id": session, "summary": {"success": True},
                         "token_summary": {}})
    if receiver is not None:
        while receiver.count() - before < N_EVENTS // 2 + 1:
            if time.perf_counter() - t0 > 600:
                break
            time.sleep(0.05)  # noqa: ASYNC251 - bench loop polls a thread
    total = time.perf_counter() - t0
    got = receiver.count() - before if receiver else 0
    return N_EVENTS / emitted, N_EVENTS / total, got


async def run_time(host: PluginHost, endpoint: str | None, session: str) -> float:
    config = config_for(endpoint)
    t0 = time.perf_counter()
    outcome = await Orchestrator(config, host).run(RunOptions(task=LEAD, session=session))
    assert outcome.exit_code == 0, outcome.result.error
    return time.perf_counter() - t0


async def main() -> None:
    # The SDK's span queue holds 2,048 spans by default and drops beyond that; a real run has
    # tens of spans, the bench 50,000 at once.
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
    os.environ["OTEL_METRICS_EXPORTER"] = "none"
    with tempfile.TemporaryDirectory() as tmp, RemoteReceiver() as receiver:
        os.chdir(tmp)
        os.environ["SIGIL_HOME"] = str(Path(tmp) / "home")
        for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            os.environ.pop(var, None)
        host = PluginHost().load()
        await run_time(host, receiver.url, "sess_warm")  # imports and the pipeline, once
        off_emit, _off_total, _ = await event_rate(host, None, "sess_off", None)
        on_emit, on_total, got = await event_rate(host, receiver.url, "sess_on", receiver)
        print(f"events into the sinks, file sinks only:  {off_emit:>9,.0f} events/s "
              f"(target >= 50,000)")
        print(f"events into the sinks, + sink_otel:      {on_emit:>9,.0f} events/s on the run's "
              f"thread ({on_emit / off_emit:.0%} of without; target >= 50,000)")
        print(f"  end to end, all {got:,} spans at the receiver: {on_total:,.0f} events/s "
              f"({N_EVENTS // 2 + 1:,} expected)")
        os.environ["SIGIL_OFFLINE_LATENCY_MS"] = "0"
        offs, ons = [], []
        for i in range(9):  # interleaved, so that load from elsewhere hits both alike
            offs.append(await run_time(host, None, f"sess_r{i}"))
            ons.append(await run_time(host, receiver.url, f"sess_o{i}"))
        off, on = statistics.median(offs), statistics.median(ons)
        print(f"offline lead run, median of 9: {off * 1000:.0f} ms without, {on * 1000:.0f} ms "
              f"with sink_otel (+{(on - off) * 1000:.0f} ms, of which the end-of-run flush to "
              f"the receiver; target <= +50 ms)")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
