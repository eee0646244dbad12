"""`sigil batch` throughput: wall time and tasks/s against the ideal, local and Ray engines.

Each task is the lead example on the offline model with a simulated latency per LLM call
(SIGIL_OFFLINE_LATENCY_MS, 500 ms by default). The ideal wall time of a configuration is
``latency x calls per task x tasks / concurrency`` (model time only, perfectly overlapped); the
figure printed next to it is what the batch really took, with its ratio (target for local at
concurrency 200: within 2x of ideal). Framework CPU per task is the process CPU time of the
local runs (with ``--processes 2``, the workers' too) divided by the tasks (the model's
simulated latency costs no CPU).

    python bench/batch_bench.py                      # 1,000 tasks: local c=50, c=200
                                                     # (1 and 2 processes); c=1 on 10
    python bench/batch_bench.py --tasks 200 --ray    # plus the ray engine, 2 workers
    python bench/batch_bench.py --latency-ms 200 --serial-tasks 5

Runs in a temporary SIGIL_HOME and outputs folder; nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = "Qualify this lead: Person {i}, CTO at Company {i}, interested in enterprise plan"


def write_tasks(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"t{i}", "task": TASK.format(i=i)}) + "\n")
    return path


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


_children_seen = [0.0]


def children_cpu(processes: int) -> float:
    """CPU of the worker processes that ended since the last call (``--processes``)."""
    if processes <= 1:
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    spent, _children_seen[0] = total - _children_seen[0], total
    return spent


def calls_per_task(outputs: Path, results: list[dict]) -> float:
    counts = []
    for row in results[:20]:
        path = outputs / "sessions" / f"{row['session_id']}.json"
        if path.exists():
            events = json.loads(path.read_text())["events"]
            counts.append(sum(1 for e in events if e["operation"] == "llm_call"
                              and e["level"] == "debug"))
    return sum(counts) / max(1, len(counts))


def run_local(n: int, concurrency: int, work: Path, processes: int = 1) -> dict:
    from sigil_core.batch import BatchSettings, Progress, ResultsFile, load_tasks
    from sigil_core.batch import run_local as engine
    from sigil_core.config import load_config
    from sigil_core.files import disabled_plugins
    from sigil_core.plugins import PluginHost

    out = work / f"local-c{concurrency}-p{processes}"
    os.environ["SIGIL_OUTPUTS_DIR"] = str(out)
    tasks = load_tasks(write_tasks(work / f"tasks-{n}.jsonl", n))
    config = load_config()
    host = PluginHost(disabled=disabled_plugins()).load()
    results = ResultsFile(out / "results.jsonl")
    settings = BatchSettings(concurrency=concurrency, session_prefix=f"bench_c{concurrency}")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with Progress(n, live=False, interval=3600, stream=open(os.devnull, "w")) as progress:
        if processes > 1:
            from sigil_core.batch_procs import run_processes

            report = asyncio.run(run_processes(tasks, settings, config, results, progress,
                                               processes=processes))
        else:
            report = asyncio.run(engine(tasks, settings, config, host, results, progress))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0 + children_cpu(processes)
    results.close()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {"tasks": n, "concurrency": concurrency, "processes": processes, "wall": wall,
            "cpu": cpu,
            "failed": report.failed, "calls": calls_per_task(out, rows)}


def run_ray(n: int, workers: int, per_worker: int, work: Path) -> dict:
    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}",
                    "--node-ip-address=127.0.0.1", f"--num-cpus={workers}",
                    "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={work / 'ray'}"], check=True, capture_output=True, env=env)
    out = work / "ray"
    tasks = write_tasks(work / f"tasks-{n}.jsonl", n)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "sigil_core", "batch", str(tasks), "--engine", "ray",
             "--address", f"127.0.0.1:{port}", "--workers", str(workers), "--concurrency",
             str(per_worker), "--output", str(out / "results.jsonl")],
            env={**env, "SIGIL_OUTPUTS_DIR": str(out)}, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, check=False)
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {"tasks": n, "concurrency": workers * per_worker, "wall": wall, "cpu": None,
            "failed": sum(not r["success"] for r in rows), "calls": calls_per_task(out, rows),
            "exit": proc.returncode}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--serial-tasks", type=int, default=10,
                        help="tasks for the concurrency-1 row (1,000 of them take hours)")
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--ray", action="store_true", help="also run the ray engine")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--ray-per-worker", type=int, default=100)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sigil-batch-bench-"))
    os.environ.update(SIGIL_HOME=str(work / "home"),
                      SIGIL_OFFLINE_LATENCY_MS=str(args.latency_ms))
    latency = args.latency_ms / 1000
    rows = [("local", run_local(args.serial_tasks, 1, work))]
    for c in (50, 200):
        rows.append(("local", run_local(args.tasks, c, work)))
    children_cpu(2)  # start counting the workers' CPU from here
    rows.append(("local -p2", run_local(args.tasks, 200, work, processes=2)))
    if args.ray:
        rows.append((f"ray {args.ray_workers}w", run_ray(args.tasks, args.ray_workers,
                                                        args.ray_per_worker, work)))
    print(f"sigil batch, lead example, {args.latency_ms} ms per LLM call, "
          f"load average {os.getloadavg()[0]:.2f}")
    head = (f"{'engine':<10}{'conc':>6}{'tasks':>7}{'calls/task':>11}{'wall s':>9}"
            f"{'ideal s':>9}{'ratio':>7}{'tasks/s':>9}{'CPU ms/task':>12}{'failed':>8}  target")
    print(head)
    print("-" * len(head))
    for name, r in rows:
        ideal = latency * r["calls"] * r["tasks"] / r["concurrency"]
        ratio = r["wall"] / ideal if ideal else float("nan")
        cpu = f"{1000 * r['cpu'] / r['tasks']:.1f}" if r["cpu"] is not None else "-"
        target = "<= 2.0x" if name.startswith("local") and r["concurrency"] == 200 else ""
        print(f"{name:<10}{r['concurrency']:>6}{r['tasks']:>7}{r['calls']:>11.1f}"
              f"{r['wall']:>9.2f}{ideal:>9.2f}{ratio:>6.2f}x{r['tasks'] / r['wall']:>9.1f}"
              f"{cpu:>12}{r['failed']:>8}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
