"""Fixtures for router_default's tests (prefixed ``rd_``), built on :mod:`sigil_core.testing`:
a real Run with the core's builtins plus this plugin, and the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sigil_router_default.plugin as router_plugin
import yaml

from sigil_core import PluginHost, Run, load_config
from sigil_core.testing import SigilCLI, make_host, make_run

LABELLED = Path(__file__).with_name("router_default_labelled.yaml")


@pytest.fixture
def rd_host() -> PluginHost:
    """The core's builtins and this plugin only: other installed plugins stay out."""
    host: PluginHost = make_host()
    host.register(router_plugin, name="router_default")
    return host


@pytest.fixture
def rd_make_run(sigil_home: Path, rd_host: PluginHost) -> Callable[..., Run]:
    """``make_run`` on ``rd_host``; ``router`` is written as the config's ``router:`` section."""

    def make(task: str = "", provider: Any = None, agent: str | None = None,
             router: dict[str, Any] | None = None) -> Run:
        if router is not None:
            (sigil_home / "config.yaml").write_text(yaml.safe_dump({"router": router}))
        config = load_config()
        run: Run = make_run(provider=provider, config=config, host=rd_host, task=task,
                            budget=config.budget.total, agent=agent)
        return run

    return make


@pytest.fixture
def rd_cli(tmp_path: Path) -> SigilCLI:
    # Other installed plugins may hook routing too: name ours explicitly.
    return SigilCLI(tmp_path, env={"COLUMNS": "200", "SIGIL_USE": "route=router_default"})


@pytest.fixture
def rd_labelled() -> list[dict[str, str]]:
    return yaml.safe_load(LABELLED.read_text())
