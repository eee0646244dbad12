"""Start-up and end-to-end timings of the CLI, as a user sees them (cold processes).

    python bench/startup_bench.py [--runs 15] [--only help,plugins,offline,anthropic,openai,worker]
                                  [--checkout DIR]

``--checkout DIR`` runs the ``sigil`` of another checkout (e.g. ``git archive`` of an older
commit unpacked in DIR: its core and plugins go first on PYTHONPATH) with the same harness and
test servers, for before/after figures measured side by side.

Each case runs in a fresh process with every installed plugin loaded; each figure is printed
next to its target (issue 20, DESIGN §8) with the load average (2 cores shared: a loaded
machine shows in the figures):

* ``sigil --help``: wall time, target <= 200 ms;
* ``sigil plugins``: wall time (no target; it loads every plugin);
* offline ``sigil orchestrate`` of the spec's lead example, end to end: target <= 0.5 s;
* time to the first LLM request with a provider configured (``anthropic`` and ``openai``,
  each against its local test server started by this script, with the official SDK): from
  just before the process is started to the moment the server receives the first request
  (``arrived_at`` in its call log), target <= 400 ms; the whole run's wall time next to it.
  Measured twice: a cold process (the SDK imported in a background thread from the moment
  the provider is chosen, see sigil_core/preload.py), and with ``sigil worker start`` (runs
  forked from a resident worker that keeps the SDKs imported, see sigil_core/worker.py).
  The offline run is measured with the worker too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from urllib.request import Request, urlopen

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"
CASES = ("help", "plugins", "offline", "anthropic", "openai", "worker")


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(start, wall seconds, CPU seconds) of one process (CPU: less sensitive to load)."""
    c0 = children_cpu()
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - t0, children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return start, elapsed, cpu


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def report(label: str, values: list[float], target: float | None, extra: str = "") -> None:
    median = statistics.median(values)
    verdict = ""
    if target is not None:
        verdict = f"   target <= {target * 1000:.0f} ms: {'ok' if median <= target else 'MISSED'}"
    print(f"{label:<44} median {ms(median)}   min {ms(min(values))}{verdict}{extra}   "
          f"({load()})", flush=True)


def timed_case(label: str, args: list[str], cwd: str, env: dict[str, str], runs: int,
               target: float | None) -> None:
    run(args, cwd, env)  # warm the OS file cache, as a user's second run would be
    samples = [run(args, cwd, env) for _ in range(runs)]
    cpus = [c for _, _, c in samples]
    report(label, [w for _, w, _ in samples], target,
           f"   CPU median {ms(statistics.median(cpus))}")


def first_request(provider: str, module: str, env_for: Callable[[str], dict[str, str]],
                  sigil: str, cwd: str, runs: int, how: str = "cold") -> None:
    """Time from process start to the first request at the provider's local test server."""
    from sigil_core.testing import LEAD_ANSWERS
    from sigil_core.testing.server import ServerProcess

    server = ServerProcess(module, "--answers", str(LEAD_ANSWERS))
    try:
        env = env_for(server.url)
        args = [sigil, "orchestrate", "--provider", provider, LEAD]
        firsts: list[float] = []
        walls: list[float] = []
        for i in range(runs + 1):
            urlopen(Request(server.root + "/_test/reset", data=b"{}", method="POST"),
                    timeout=10).close()
            start, wall, _ = run(args, cwd, env)
            arrivals = [c["arrived_at"] for c in server.calls() if c.get("arrived_at")]
            if not arrivals:
                raise SystemExit(f"{provider}: no request reached the test server")
            if i:  # the first run warms the OS file cache
                firsts.append(min(arrivals) - start)
                walls.append(wall)
        report(f"first {provider} request after start ({how})", firsts, 0.400,
               f"   (whole run median {ms(statistics.median(walls))})")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases among {', '.join(CASES)}")
    parser.add_argument("--checkout", default=None, metavar="DIR",
                        help="measure the sigil of this checkout (see the docstring)")
    opts = parser.parse_args()
    only = {c.strip() for c in opts.only.split(",") if c.strip()}
    unknown = only - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    sigil = os.path.join(os.path.dirname(sys.executable), "sigil")
    with tempfile.TemporaryDirectory() as tmp:
        # PYTHONDONTWRITEBYTECODE (set in some sandboxes and CI images) would make every
        # process compile Sigil's own modules from source (~0.1 s): a user's `pip install`
        # writes the bytecode caches, and the warm-up run of each case writes them for an
        # editable install, so they are measured as a user has them.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIGIL_", "ANTHROPIC_", "OPENAI_"))
               and k != "PYTHONDONTWRITEBYTECODE"}
        # Cold means no worker: none is started by the runs measured (worker.auto_start).
        env["SIGIL_WORKER_AUTO_START"] = "0"
        env["SIGIL_HOME"] = os.path.join(tmp, "home")
        if opts.checkout:
            root = os.path.abspath(opts.checkout)
            plugins = sorted(os.path.join(root, "plugins", d)
                             for d in os.listdir(os.path.join(root, "plugins")))
            env["PYTHONPATH"] = os.pathsep.join([root, *plugins])
            # Its own entry point: the installed `sigil` script may name a newer module.
            sigil = os.path.join(tmp, "sigil")
            with open(sigil, "w") as fh:
                fh.write(f"#!{sys.executable}\nimport runpy\n"
                         "runpy.run_module('sigil_core', run_name='__main__')\n")
            os.chmod(sigil, 0o755)
            print(f"checkout {root}")
        listing = subprocess.run([sigil, "plugins", "--json"], env=env, cwd=tmp,
                                 capture_output=True, text=True, check=False).stdout
        try:
            active = sum(1 for p in json.loads(listing) if p.get("status") == "active")
        except (ValueError, AttributeError):
            active = -1
        print(f"{active} active plugins; {opts.runs} runs each; python "
              f"{sys.version.split()[0]}; {os.cpu_count()} CPUs; {load()}")
        if "help" in only:
            timed_case("sigil --help", [sigil, "--help"], tmp, env, opts.runs, 0.200)
        if "plugins" in only:
            timed_case("sigil plugins", [sigil, "plugins"], tmp, env, opts.runs, None)
        if "offline" in only:
            timed_case("sigil orchestrate (offline, lead example)",
                       [sigil, "orchestrate", LEAD], tmp, env, opts.runs, 0.500)
        providers = {
            "anthropic": ("sigil_provider_anthropic.testing.server",
                          lambda url: dict(env, ANTHROPIC_API_KEY="sk-ant-bench",
                                           ANTHROPIC_BASE_URL=url)),
            "openai": ("sigil_provider_openai.testing.server",
                       lambda url: dict(env, OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=url)),
        }
        for name, (module, env_for) in providers.items():
            if name in only:
                first_request(name, module, env_for, sigil, tmp, opts.runs)
        if "worker" in only:
            subprocess.run([sigil, "worker", "start"], env=env, cwd=tmp, check=True,
                           capture_output=True)
            try:
                timed_case("sigil orchestrate (offline, worker)", [sigil, "orchestrate", LEAD],
                           tmp, env, opts.runs, 0.500)
                for name, (module, env_for) in providers.items():
                    first_request(name, module, env_for, sigil, tmp, opts.runs, "worker")
            finally:
                subprocess.run([sigil, "worker", "stop"], env=env, cwd=tmp, check=False,
                               capture_output=True)


if __name__ == "__main__":
    main()
