"""pytest fixtures for plugin tests, loaded by pytest through sigil-core's ``pytest11`` entry
point (nothing to import): ``sigil_cli``, ``sigil_home`` and ``sigil_replay``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..replay import Cassette, ReplayOutcome, replay
from .harness import SigilCLI


@pytest.fixture
def sigil_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary SIGIL_HOME and working folder for in-process tests (``make_run``,
    ``Orchestrator``): the caller's SIGIL_* and API-key variables are removed."""
    import os

    for var in list(os.environ):
        if var.startswith(SigilCLI.DROPPED):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SIGIL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def sigil_cli(tmp_path: Path) -> SigilCLI:
    """The real ``sigil`` command in a temporary home (see :class:`SigilCLI`)."""
    return SigilCLI(tmp_path / "sigil")


@pytest.fixture
def sigil_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a recorded task against its cassette: ``sigil_replay(path, strict=True)``.

    The run happens in a temporary folder with a fresh SIGIL_HOME, through the installed
    plugins, with the cassette's answers instead of a model. With ``strict`` (the default)
    a request that has no recorded answer fails the test and shows the difference from the
    nearest recorded request. Returns a :class:`~sigil_core.replay.ReplayOutcome`.
    """
    import asyncio

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "sigil-home"))

    def run(path: str | Path, *, strict: bool = True) -> ReplayOutcome:
        from ..config import load_config
        from ..plugins import PluginHost

        cassette = Cassette.load(Path(path))
        result = asyncio.run(replay(cassette, load_config(), PluginHost().load(),
                                    strict=strict))
        if strict and result.mismatches:
            pytest.fail("replay of " + str(path) + ": " + result.mismatches[0].describe(),
                        pytrace=False)
        return result

    return run
