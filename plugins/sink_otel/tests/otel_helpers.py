"""Helpers for sink_otel's tests: the real CLI in a temp folder. (Not named conftest: the core's
tests import their own ``conftest`` by name.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


LEAD = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class OtelCLI:
    """Runs ``sigil`` as a subprocess with its own SIGIL_HOME and no OTEL_* from outside."""

    def __init__(self, root: Path) -> None:
        self.cwd = root / "work"
        self.home = root / "home"
        self.cwd.mkdir()
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIGIL_", "ANTHROPIC_", "OTEL_", "TRACEPARENT",
                                         "TRACESTATE"))}
        self.env.update({"SIGIL_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "120"})
        self.elapsed = 0.0
        # A generous export bound: tests about the bound set their own; the others must not
        # fail because a loaded machine answered in 2.1 s.
        self.config("otel:\n  flush_timeout_ms: 30000\n")

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        t0 = time.perf_counter()
        try:
            return subprocess.run(
                [sys.executable, "-m", "sigil_core", *args], cwd=self.cwd,
                env={**self.env, **(env or {})}, capture_output=True, text=True,
                timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        finally:
            self.elapsed = time.perf_counter() - t0

    def config(self, text: str) -> None:
        (self.home / "config.yaml").write_text(text)

    def sessions(self) -> list[dict[str, Any]]:
        folder = self.cwd / "outputs" / "sessions"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
