"""Start-up and end-to-end timings of the CLI, as a user sees them (cold processes).

    python bench/startup_bench.py [--runs 15]

Prints the median and min wall time of `sigil --help`, `sigil plugins`, and an offline
`sigil orchestrate` of the spec's lead example, each in a fresh process, with every installed
plugin loaded. Targets (DESIGN §8): --help <= 200 ms, offline orchestrate <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(args: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one process (CPU: less sensitive to other load)."""
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - t0, children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    opts = parser.parse_args()
    sigil = os.path.join(os.path.dirname(sys.executable), "sigil")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
        env["SIGIL_HOME"] = os.path.join(tmp, "home")
        cases = {
            "sigil --help": [sigil, "--help"],
            "sigil plugins": [sigil, "plugins"],
            "sigil orchestrate (offline, lead example)": [sigil, "orchestrate", LEAD],
            # the same with the lexical embedder: what the semantic default (minilm) costs
            "  ... with memory.embedder hashing": [sigil, "orchestrate", LEAD],
        }
        hashing_home = os.path.join(tmp, "home_hashing")
        os.makedirs(hashing_home)
        with open(os.path.join(hashing_home, "config.yaml"), "w") as fh:
            fh.write("memory:\n  embedder: hashing\n")
        plugins = subprocess.run([sigil, "plugins"], env=env, cwd=tmp, capture_output=True,
                                 text=True, check=False).stdout
        active = sum(1 for line in plugins.splitlines()[1:] if "active" in line)
        print(f"{active} active plugins; {opts.runs} runs each; python {sys.version.split()[0]}")
        for label, args in cases.items():
            run_env = dict(env, SIGIL_HOME=hashing_home) if "hashing" in label else env
            timed(args, tmp, run_env)  # warm the OS file cache, as a user's second run would be
            samples = [timed(args, tmp, run_env) for _ in range(opts.runs)]
            walls = [w for w, _ in samples]
            cpus = [c for _, c in samples]
            print(f"{label:<45} median {statistics.median(walls) * 1000:7.1f} ms   "
                  f"min {min(walls) * 1000:7.1f} ms   CPU median "
                  f"{statistics.median(cpus) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
