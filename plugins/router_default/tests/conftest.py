"""Fixtures for router_default's tests (all prefixed ``rd_``): a real Run with the core's
builtins plus this plugin, the offline provider or a scripted one, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sigil_router_default.plugin as router_plugin
import yaml

from sigil_core.config import load_config
from sigil_core.llm import LLMRequest, LLMResponse
from sigil_core.model import ExecutionContext, TokenUsage, utcnow
from sigil_core.plugins import PluginHost
from sigil_core.run import Run

LABELLED = Path(__file__).with_name("router_default_labelled.yaml")


class ScriptedProvider:
    """A provider that answers each purpose from a script and records every request."""

    name = "scripted"
    priority = 0

    def __init__(self, answers: dict[str, Callable[[LLMRequest], Any]]) -> None:
        self.answers = answers
        self.requests: list[LLMRequest] = []

    def available(self, config: Any) -> bool:
        return True

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        return max(1, len(request.text()) // 4)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        answer = self.answers[request.purpose](request)
        text = answer if isinstance(answer, str) else json.dumps(answer)
        usage = TokenUsage(self.estimate_input_tokens(request), max(1, len(text) // 4),
                           model="scripted:test")
        return LLMResponse(text=text, usage=usage, model="scripted:test")


@pytest.fixture
def rd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SIGIL_HOME", str(home))
    for key in list(os.environ):
        if key.startswith("SIGIL_") and key != "SIGIL_HOME" or key.startswith("ANTHROPIC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def rd_host() -> PluginHost:
    """The core's builtins and this plugin only: other installed plugins stay out."""
    host = PluginHost(load_entry_points=False).load()
    host.register(router_plugin, name="router_default")
    return host


@pytest.fixture
def rd_make_run(rd_home: Path, rd_host: PluginHost) -> Callable[..., Run]:
    def make(task: str = "", provider: Any = None, agent: str | None = None,
             router: dict[str, Any] | None = None) -> Run:
        if router is not None:
            (rd_home / "config.yaml").write_text(yaml.safe_dump({"router": router}))
        config = load_config()
        provider = provider or rd_host.registry("providers")["offline"]
        ctx = ExecutionContext("sess_test", "sess_test", task, config.budget.total, utcnow(),
                               agent=agent)
        return Run(ctx, config, rd_host, provider)

    return make


class RouterCLI:
    """`python -m sigil_core` in a temp cwd with its own SIGIL_HOME."""

    def __init__(self, root: Path) -> None:
        self.cwd = root / "work"
        self.home = root / "home"
        self.cwd.mkdir(exist_ok=True)
        self.home.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SIGIL_", "ANTHROPIC_"))}
        self.env.update({"SIGIL_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200",
                         # Other installed plugins may hook routing too: name ours explicitly.
                         "SIGIL_USE": "route=router_default"})

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sigil_core", *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)

    def json(self, *args: str) -> dict[str, Any]:
        proc = self(*args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def session(self, session_id: str) -> dict[str, Any]:
        path = self.cwd / "outputs" / "sessions" / f"{session_id}.json"
        return json.loads(path.read_text())

    @property
    def agents_dir(self) -> Path:
        return self.home / "agents"


@pytest.fixture
def rd_cli(tmp_path: Path) -> RouterCLI:
    return RouterCLI(tmp_path)


@pytest.fixture
def rd_scripted() -> type[ScriptedProvider]:
    return ScriptedProvider


@pytest.fixture
def rd_labelled() -> list[dict[str, str]]:
    return yaml.safe_load(LABELLED.read_text())
