"""Helpers of the memory_sqlite tests: the real CLI in a subprocess, session events, clustered
vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np

LEAD = ("Qualify lead John Smith, CTO at Acme Corp, who asked about our enterprise plan "
        "pricing")


def make_memory_cli(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGIL_", "ANTHROPIC"))}
    env["SIGIL_HOME"] = str(tmp_path / "home")
    # Only this plugin on top of the core: other installed plugins must not change what the
    # offline run does (or clash over a phase).
    others = {ep.name for ep in entry_points(group="sigil")} - {"memory_sqlite"}
    env["SIGIL_DISABLE_PLUGINS"] = ",".join(sorted(others))

    def run(*args, input=None):
        return subprocess.run([sys.executable, "-m", "sigil_core", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, input=input, timeout=120, check=False)

    run.home = tmp_path / "home"
    run.cwd = tmp_path
    return run


def events(cwd: Path, session: str) -> list[dict]:
    path = cwd / "outputs" / "sessions" / f"{session}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def completed(evs, operation):
    return [e for e in evs if e["operation"] == operation and e["message"].startswith("Completed")]


def clustered(n: int, seed: int = 7, dims: int = 384) -> np.ndarray:
    """``n`` unit vectors around 40 random centres (shaped like sentence embeddings' topics)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dims)).astype(np.float32)
    vecs = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, dims)).astype(
        np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
