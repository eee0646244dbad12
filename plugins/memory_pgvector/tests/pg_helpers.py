"""Running `sigil` as separate "hosts" for the memory_pgvector tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LEAD_TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


def host(root: Path, name: str, dsn: str, schema: str) -> dict[str, str]:
    """The environment of one "host": its own SIGIL_HOME and working folder, one shared DSN."""
    home = root / name / "home"
    work = root / name / "work"
    home.mkdir(parents=True)
    work.mkdir(parents=True)
    # hashing: the vectors these tests write themselves (the installed default is minilm).
    (home / "config.yaml").write_text(f"memory:\n  backend: pgvector\n  schema: {schema}\n"
                                      "  embedder: hashing\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
    env.update({"SIGIL_HOME": str(home), "SIGIL_MEMORY_DSN": dsn, "NO_COLOR": "1",
                "_cwd": str(work)})
    return env


def sigil(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cwd = env["_cwd"]
    return subprocess.run([sys.executable, "-m", "sigil_core", *args], cwd=cwd,
                          env={k: v for k, v in env.items() if k != "_cwd"}, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL, check=False)


def events(env: dict[str, str]) -> list[dict]:
    files = sorted((Path(env["_cwd"]) / "outputs" / "sessions").glob("*.jsonl"))
    assert len(files) == 1, files
    return [json.loads(x) for x in files[0].read_text().splitlines() if x]


def completed(evs: list[dict], operation: str) -> dict:
    done = [e for e in evs if e["operation"] == operation and e["message"].startswith("Completed")]
    assert done, [e["message"] for e in evs if e["operation"] == operation]
    return done[0]["metadata"]
