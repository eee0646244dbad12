"""The core tests' runner for the real CLI and the lead task. Imported by name
(``from core_cli import CLI``), not from ``conftest``: the plugins' test folders have conftest
modules of their own, and one pytest run over several folders binds that name to only one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LEAD_TASK = "Qualify this lead: John Smith, CEO at Acme Corp, interested in enterprise plan"


class CLI:
    """Runs `sigil` as a subprocess in a temp folder with its own SIGIL_HOME."""

    def __init__(self, root: Path) -> None:
        self.cwd = root / "work"
        self.home = root / "home"
        self.cwd.mkdir()
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
        self.env.update({"SIGIL_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "120",
                         # No resident worker left behind by a test's run (worker.auto_start).
                         "SIGIL_WORKER_AUTO_START": "0"})

    @staticmethod
    def argv(*args: str) -> list[str]:
        """The command line of `sigil ARGS` (for tests that start it themselves)."""
        return [sys.executable, "-m", "sigil_core", *args]

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), cwd=self.cwd,
            env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, check=False
        )

    @property
    def sessions(self) -> Path:
        return self.cwd / "outputs" / "sessions"

    def session_json(self) -> dict:
        files = sorted(self.sessions.glob("*.json"))
        assert len(files) == 1, files
        return json.loads(files[0].read_text())

    def session_jsonl(self) -> list[dict]:
        files = sorted(self.sessions.glob("*.jsonl"))
        assert len(files) == 1, files
        return [json.loads(line) for line in files[0].read_text().splitlines() if line]
