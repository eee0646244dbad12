"""Helpers of the memory_sqlite tests: the real CLI (sigil_core.testing.SigilCLI), session events,
clustered vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sigil_core.testing import SigilCLI, events_named

LEAD = ("Qualify lead John Smith, CTO at Acme Corp, who asked about our enterprise plan "
        "pricing")


def make_memory_cli(tmp_path: Path) -> SigilCLI:
    """The real `sigil` in a subprocess (own SIGIL_HOME and working folder), with only this
    plugin on top of the core: other installed plugins must not change what the offline run
    does (or clash over a phase)."""
    return SigilCLI(tmp_path, only=["memory_sqlite"])


def events(cwd: Path, session: str) -> list[dict]:
    path = cwd / "outputs" / "sessions" / f"{session}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def completed(evs: list[dict], operation: str) -> list[dict]:
    return events_named(evs, operation, "Completed")


def clustered(n: int, seed: int = 7, dims: int = 384) -> np.ndarray:
    """``n`` unit vectors around 40 random centres (shaped like sentence embeddings' topics)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dims)).astype(np.float32)
    vecs = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, dims)).astype(
        np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
